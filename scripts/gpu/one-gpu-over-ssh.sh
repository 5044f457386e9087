#!/bin/bash
# For the GPU machine of the `device` tool (issue 16, the one-GPU part): run
# there as `bash gpu-carry/run.sh` with `gpu-carry` carried. Prepare the
# carry folder here first (it is git-ignored):
#
#   mkdir -p gpu-carry/lib gpu-carry/deb
#   strip -o gpu-carry/clusterkit build-test/clusterkit
#   cp /lib/x86_64-linux-gnu/{libspdlog.so.1.10,libfmt.so.9,libyaml-cpp.so.0.7} gpu-carry/lib/
#   (cd gpu-carry/deb && apt-get download openssh-server openssh-client openssh-sftp-server iproute2 \
#      libbpf1 libelf1 libmnl0 libcap2 libxtables12 libtirpc3 libdb5.3 libwrap0 libnsl2)
#   cp scripts/gpu/one-gpu-over-ssh.sh gpu-carry/run.sh
#
# Issue 16 (one GPU): the H200 machine as a GPU host reached over ssh (a real
# sshd unpacked from Debian's .deb, on 127.0.0.1:2222), then clusterkit
# facts, preflight and a one-rank nccl-check over that ssh, and the raw
# nvidia-smi captures for the fixtures. Everything goes into $OUT/run.tar.gz.
set -u
C=$PWD/gpu-carry; R=/tmp/ckroot; S=/tmp/cksshd; W=$OUT/run
mkdir -p $R $S/bin $W; chmod 700 $S
for d in $C/deb/*.deb; do dpkg -x $d $R; done
L=$R/usr/lib/x86_64-linux-gnu:$R/lib/x86_64-linux-gnu
for b in ssh ssh-keygen; do printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$L" "$R/usr/bin/$b" > $S/bin/$b; done
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$L" "$R/bin/ip" > $S/bin/ip
chmod +x $S/bin/*
export PATH=$S/bin:$PATH LD_LIBRARY_PATH=$C/lib
{ date; uname -a; grep PRETTY /etc/os-release; python3 -c 'import torch;print("torch",torch.__version__,torch.version.cuda,torch.cuda.nccl.version())'; } > $W/machine.txt 2>&1
for b in $R/usr/sbin/sshd $R/usr/bin/ssh $R/bin/ip $C/clusterkit; do echo "== $b"; LD_LIBRARY_PATH=$L:$C/lib ldd $b | grep "not found"; done > $W/ldd.txt 2>&1
id sshd >/dev/null 2>&1 || useradd -r -M -s /usr/sbin/nologin -d /run/sshd sshd
mkdir -p /run/sshd; chmod 755 /run/sshd
ssh-keygen -q -t ed25519 -N '' -f $S/hostkey; ssh-keygen -q -t ed25519 -N '' -f $S/id
cp $S/id.pub $S/authorized_keys
cat > $S/sshd_config <<CFG
ListenAddress 127.0.0.1
Port 2222
HostKey $S/hostkey
PidFile $S/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AuthorizedKeysFile $S/authorized_keys
StrictModes no
Subsystem sftp $R/usr/lib/openssh/sftp-server
MaxSessions 64
SetEnv PATH=$S/bin:$PATH NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
CFG
LD_LIBRARY_PATH=$L $R/usr/sbin/sshd -t -f $S/sshd_config > $W/sshd-t.txt 2>&1
LD_LIBRARY_PATH=$L $R/usr/sbin/sshd -f $S/sshd_config -E $W/sshd.log
sleep 1
cat > $W/inventory.yaml <<INV
# The H200 machine reached over ssh as a GPU host (issue 16, one GPU).
defaults: {user: root, identity_file: $S/id, known_hosts_file: $S/known_hosts, host_key_policy: accept-new}
hosts:
  h200: {address: 127.0.0.1, port: 2222, roles: [head, gpu], gpus: {count: 1, model: H200, memory_gib: 141}}
INV
CK="$C/clusterkit -i $W/inventory.yaml"
$CK exec -- sh -c 'hostname; echo $PATH; command -v nvidia-smi python3 ip' > $W/exec.txt 2>&1; echo "exec rc=$?" >> $W/rc.txt
$CK facts > $W/facts.txt 2> $W/facts.err; echo "facts rc=$?" >> $W/rc.txt
$CK --json facts > $W/facts.json 2>> $W/facts.err; echo "facts json rc=$?" >> $W/rc.txt
$CK preflight > $W/preflight.txt 2> $W/preflight.err; echo "preflight rc=$?" >> $W/rc.txt
$CK --json preflight > $W/preflight.json 2>> $W/preflight.err; echo "preflight json rc=$?" >> $W/rc.txt
$CK nccl-check > $W/nccl-check.txt 2> $W/nccl-check.err; echo "nccl rc=$?" >> $W/rc.txt
$CK --json nccl-check > $W/nccl-check.json 2>> $W/nccl-check.err; echo "nccl json rc=$?" >> $W/rc.txt
# NCCL forced onto sockets (P2P and SHM off, the interface the route to the
# head gives, here lo), with NCCL's own log.
$CK nccl-check -e NCCL_P2P_DISABLE=1 -e NCCL_SHM_DISABLE=1 -e NCCL_DEBUG=INFO > $W/nccl-socket.txt 2>&1; echo "nccl socket rc=$?" >> $W/rc.txt
# The interface deliberately wrong: the check must fail and name the fix.
$CK nccl-check --no-ifname -e NCCL_SOCKET_IFNAME=nosuch0 -e GLOO_SOCKET_IFNAME=nosuch0 > $W/nccl-wrong-ifname.txt 2>&1; echo "nccl wrong ifname rc=$?" >> $W/rc.txt
$CK --json nccl-check --no-ifname -e NCCL_SOCKET_IFNAME=nosuch0 -e GLOO_SOCKET_IFNAME=nosuch0 > $W/nccl-wrong-ifname.json 2>&1; echo "nccl wrong ifname json rc=$?" >> $W/rc.txt
$CK nccl-check --no-ifname -e NCCL_SOCKET_IFNAME=nosuch0 > $W/nccl-wrong-nccl-ifname.txt 2>&1; echo "nccl wrong nccl ifname rc=$?" >> $W/rc.txt
# The same machine as a local host with no address (issue 14: the ports
# and the rendezvous must not try to resolve the label).
printf 'hosts:\n  h200: {local: true, roles: [head, gpu], gpus: {count: 1, model: H200, memory_gib: 141}}\n' > $W/local.yaml
$C/clusterkit -i $W/local.yaml preflight > $W/local-preflight.txt 2>&1; echo "local preflight rc=$?" >> $W/rc.txt
$C/clusterkit -i $W/local.yaml nccl-check > $W/local-nccl-check.txt 2>&1; echo "local nccl rc=$?" >> $W/rc.txt
$C/clusterkit -i $W/local.yaml --json exec -- nvidia-smi -L > $W/local-exec.json 2>&1; echo "local exec rc=$?" >> $W/rc.txt
# The seed's model planned on the GPUs the inventory declares (no --gpus),
# and the version that ran all of this.
$C/clusterkit -i $W/inventory.yaml plan Qwen/Qwen2.5-72B-Instruct > $W/plan-declared.txt 2>&1; echo "plan -i rc=$?" >> $W/rc.txt
$C/clusterkit --version > $W/version.txt 2>&1
nvidia-smi > $W/nvidia-smi.txt 2>&1; nvidia-smi -L > $W/list.txt 2>&1
nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,driver_version,compute_cap,pci.bus_id --format=csv,noheader,nounits > $W/query.csv 2>&1
nvidia-smi -q -x > $W/q.xml 2>&1; nvidia-smi topo -m > $W/topo.txt 2>&1
$C/clusterkit -i $W/inventory.yaml disconnect >/dev/null 2>&1
kill $(cat $S/sshd.pid) 2>/dev/null
cd $OUT && tar czf run.tar.gz run && rm -rf run
