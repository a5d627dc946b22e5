"""gf-train: distributed pretraining for GoldFinch, Finch and Llama."""
__version__ = "0.1.0"
