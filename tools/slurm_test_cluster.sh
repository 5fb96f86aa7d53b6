#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the tests (not for users).
#
#   tools/slurm_test_cluster.sh start   # install if missing, configure, start, wait for an idle node
#   tools/slurm_test_cluster.sh stop    # stop every daemon it started, by PID
#   tools/slurm_test_cluster.sh status
#
# Debian's slurm-wlm 22.05 + munge + slurmdbd on MariaDB, started by hand (no
# systemd here). Partitions `cpu` and `gpu`; the node has 2 GPUs of GRES type
# gpu backed by placeholder character devices, so `--gpus` jobs schedule (they
# run on the CPU). Accounting is on, so `sacct` answers as on a real cluster.
# The config must live in /etc/slurm: the executor plugin's job steps drop
# SLURM_* variables, SLURM_CONF included.
set -euo pipefail

RUN=${SLURM_TEST_DIR:-/var/tmp/slurm-test}
CONF_DIR=/etc/slurm
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
MUNGE_SOCKET=$RUN/munge/munge.socket.2
DB_SOCKET=$RUN/mysql/mysqld.sock
DB_PASS=slurm-test

log() { echo "[slurm-test-cluster] $*" >&2; }

install_packages() {
    local missing=()
    for tool in slurmctld slurmd sbatch munged slurmdbd mariadbd mariadb-install-db; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] && return
    log "installing Debian packages (missing: ${missing[*]})"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge slurmdbd mariadb-server >/dev/null
}

wait_for() { # seconds, description, command...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    log "timed out after ${seconds}s waiting for ${what}"
    return 1
}

write_configs() {
    mkdir -p "$RUN"/{state,spool,log,pids,gpu,munge,mysql} "$CONF_DIR"
    chmod 755 "$RUN" "$RUN/munge"
    for i in 0 1; do
        [ -c "$RUN/gpu/nvidia$i" ] || mknod "$RUN/gpu/nvidia$i" c 195 "$i"
    done
    cat >"$CONF_DIR/slurm.conf" <<EOF
# written by tools/slurm_test_cluster.sh for the tests
ClusterName=testcluster
SlurmctldHost=$HOST(127.0.0.1)
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$RUN/state
SlurmdSpoolDir=$RUN/spool
SlurmctldPidFile=$RUN/pids/slurmctld.pid
SlurmdPidFile=$RUN/pids/slurmd.pid
SlurmctldLogFile=$RUN/log/slurmctld.log
SlurmdLogFile=$RUN/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
MailProg=/bin/true
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$RUN/log/jobcomp.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP
EOF
    cat >"$CONF_DIR/gres.conf" <<EOF
# written by tools/slurm_test_cluster.sh for the tests
AutoDetect=off
Name=gpu File=$RUN/gpu/nvidia[0-1]
EOF
    cat >"$CONF_DIR/slurmdbd.conf" <<EOF
# written by tools/slurm_test_cluster.sh for the tests
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
SlurmUser=root
PidFile=$RUN/pids/slurmdbd.pid
LogFile=$RUN/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$DB_PASS
EOF
    chmod 600 "$CONF_DIR/slurmdbd.conf"
}

start_munge() {
    [ -f "$RUN/munge/munge.key" ] || dd if=/dev/urandom of="$RUN/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$RUN/munge/munge.key"
    munged --force --key-file="$RUN/munge/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$RUN/pids/munged.pid" --log-file="$RUN/log/munged.log" --seed-file="$RUN/munge/munge.seed"
    wait_for 10 munge munge -n -S "$MUNGE_SOCKET"
}

start_mariadb() {
    if [ ! -d "$RUN/mysql/data/mysql" ]; then
        mariadb-install-db --user=root --datadir="$RUN/mysql/data" --auth-root-authentication-method=socket \
            >"$RUN/log/mariadb-install.log" 2>&1
    fi
    # slurmdbd's "localhost" means MariaDB's default socket
    mkdir -p /run/mysqld
    mariadbd --user=root --datadir="$RUN/mysql/data" --socket=/run/mysqld/mysqld.sock --skip-networking \
        --pid-file="$RUN/pids/mariadbd.pid" --log-error="$RUN/log/mariadb.log" &
    wait_for 30 MariaDB mariadb --socket=/run/mysqld/mysqld.sock -e "SELECT 1"
    mariadb --socket=/run/mysqld/mysqld.sock -e "
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

start() {
    if status >/dev/null 2>&1; then
        log "already running"
        return 0
    fi
    local t0=$SECONDS
    install_packages
    write_configs
    start_munge
    start_mariadb
    slurmdbd
    wait_for 30 slurmdbd sacctmgr -i show cluster
    slurmctld
    slurmd
    # Jobs of a cluster that was not stopped (a killed CI run, a restarted
    # machine) come back from the saved state as running and hold the node
    # until slurmctld gives up on them: cancel them. The saved state itself is
    # kept, so job IDs never repeat in the accounting database.
    wait_for 30 slurmctld scontrol ping
    cancel_all_jobs
    if ! wait_for 60 "an idle node" sh -c "sinfo -h -N -o %T | grep -qx idle"; then
        sinfo -N -l >&2 || true
        squeue >&2 || true
        tail -n 20 "$RUN/log/slurmctld.log" "$RUN/log/slurmd.log" >&2 || true
        exit 1
    fi
    log "up in $((SECONDS - t0)) s: $(sinfo -h -o '%P %D %T %G' | tr '\n' ' ')"
}

cancel_all_jobs() {
    local jobs
    jobs=$(squeue -h -o %i 2>/dev/null) || return 0
    [ -n "$jobs" ] || return 0
    log "cancelling jobs: $(echo $jobs)"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    wait_for 30 "the cancelled jobs to end" sh -c '[ -z "$(squeue -h -o %i)" ]' || true
}

stop() {
    # Stop with an empty queue, so that the next start has nothing to recover.
    if scontrol ping >/dev/null 2>&1; then cancel_all_jobs; fi
    for daemon in slurmd slurmctld slurmdbd mariadbd munged; do
        local pidfile="$RUN/pids/$daemon.pid" pid
        pid=$(cat "$pidfile" 2>/dev/null) || continue
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            log "stopped $daemon"
        fi
        rm -f "$pidfile"
    done
    # A slurm.conf without a controller makes every later `snakemake` wait on the
    # executor plugin's `scontrol show config` (~9 s): remove the ones written here.
    for conf in slurm.conf gres.conf slurmdbd.conf; do
        if head -1 "$CONF_DIR/$conf" 2>/dev/null | grep -q "written by tools/slurm_test_cluster.sh"; then
            rm -f "$CONF_DIR/$conf"
        fi
    done
}

status() {
    sinfo -h -N -o "%N %P %T %G"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
