# shellcheck shell=bash
# slurm/env.sh - interconnect, NCCL and runtime knobs for every launch script in slurm/ (sourced, not run).
#
# Owner: the Slurm launch. Edit THIS file (or export the variables before `sbatch`; every value below
# is a default that an existing environment variable wins over) to fit your cluster's network. The
# active defaults are safe anywhere; the commented blocks are the usual alternatives.

# ---- torch.distributed / NCCL: always on ---------------------------------------------------------
export PYTHONUNBUFFERED=${PYTHONUNBUFFERED:-1}            # logs arrive in order, per line
export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}  # a dead rank fails the job
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}                     # INFO prints the transport NCCL picked (IB/socket)
# CPU (gloo) runs and the CI: gloo finds its interface from the host name; pin it if that is wrong:
# export GLOO_SOCKET_IFNAME=lo

# ---- Head node address ---------------------------------------------------------------------------
# The head node is the first host of SLURM_JOB_NODELIST; its name must resolve on every node to an
# address the others can reach. If the host name resolves to a management network, name the fast one:
# export GF_MASTER_ADDR=$(host "$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)-ib0" | awk '{print $NF}')

# ---- InfiniBand (most HPC clusters; NCCL auto-detects it, these only pin choices) ----------------
# export NCCL_IB_HCA=mlx5                  # which HCAs NCCL may use (e.g. mlx5_0,mlx5_1,...)
# export NCCL_SOCKET_IFNAME=ib0            # bootstrap/out-of-band interface (not the data path)
# export NCCL_IB_GID_INDEX=3               # RoCE v2 needs the right GID index (3 on many clusters)
# export NCCL_NET_GDR_LEVEL=PHB            # GPUDirect RDMA distance; SYS forces it on, LOC disables it
# export NCCL_IB_TIMEOUT=22 NCCL_IB_RETRY_CNT=10   # flaky fabrics: longer IB timeouts

# ---- AWS EFA (p4d/p5) ------------------------------------------------------------------------------
# export FI_PROVIDER=efa FI_EFA_USE_DEVICE_RDMA=1 FI_EFA_FORK_SAFE=1
# export NCCL_PROTO=simple                 # recommended with the aws-ofi-nccl plugin
# export NCCL_SOCKET_IFNAME=^lo,docker

# ---- Plain Ethernet / no RDMA ----------------------------------------------------------------------
# export NCCL_IB_DISABLE=1
# export NCCL_SOCKET_IFNAME=eth0           # or ens*, bond0: the interface between the nodes
# export NCCL_SOCKET_NTHREADS=4 NCCL_NSOCKS_PERTHREAD=4   # more TCP streams on 100G Ethernet

# ---- GCP A3 (GPUDirect-TCPX) ------------------------------------------------------------------------
# export NCCL_NET=GPUDirectTCPX_v7 NCCL_GPUDIRECTTCPX_SOCKET_IFNAME=eth1,eth2,eth3,eth4
# (plus the tcpx plugin's LD_LIBRARY_PATH, per Google's A3 guide)

# ---- Single node, NVLink/NVSwitch only ----------------------------------------------------------------
# export NCCL_P2P_LEVEL=NVL               # P2P only over NVLink

# ---- Debugging a hang ------------------------------------------------------------------------------------
# export NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET TORCH_DISTRIBUTED_DEBUG=DETAIL
# export TORCH_NCCL_TRACE_BUFFER_SIZE=2000 TORCH_NCCL_DUMP_ON_TIMEOUT=1   # flight recorder on timeout

# ---- Caches on node-local disk (shared home directories are slow and get full) --------------------------
# export TRITON_CACHE_DIR=/tmp/$USER/triton HF_HOME=/scratch/$USER/hf
