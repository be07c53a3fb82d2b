# shellcheck shell=bash disable=SC2034 # sourced by tests/cluster/up and down, after lib.sh
# The harness's real node: containerd, runc and the CNI plugins, the kubelet and kube-proxy, on one
# Node (`real-0`) that runs real containers from images built here.
#
# Network: the node lives in a network namespace of its own (bind-mounted at $node_netns), with no
# link to the host's. Inside it: the node's IP (on its loopback device), the CNI bridge and the pods.
# nodebridge (host namespace) forwards the node's 127.0.0.1:APIPORT and NODE_IP:APIPORT to the API
# server on the host's 127.0.0.1, and serves HTTP CONNECT on a Unix socket that the API server's
# egress selector uses for its "cluster" traffic (Service-backed webhooks, kubelet logs and exec,
# pods/proxy). So the host's namespace sees loopback and Unix-socket traffic only.
#
# Host-wide changes, all undone by node_down: sysctls the kubelet sets (saved before, restored
# after), cgroups under /$node_cgroup in every hierarchy, mounts under the state dir, and the
# fixed directories the kubelet creates whatever it is told. host-state prints them all; up saves
# it before the node starts and down compares after the node has gone.

node_dir=$state/node
node_name=real-0
node_ip=10.0.3.1
pod_cidr=10.0.16.0/24
node_service_cidr=10.0.0.0/24 # up's --service-cluster-ip-range
node_netns=$node_dir/netns/net
node_id=$(printf '%s' "$state" | sha256sum | cut -c1-8)
node_cgroup=kreload-$node_id
# containerd wants its shims' socket dir short (42 characters at most): it cannot be in the state dir.
node_rundir=/run/kreload-$node_id
# One real node per machine: the kubelet and containerd share a few fixed host paths
# (/var/lib/kubelet/device-plugins, /var/log/containers, ...). The running one's state dir.
node_registry=/run/kreload-cluster-real-node
node_components=(nodebridge containerd kubelet kube-proxy)
# Tests' workloads land on the kwok nodes unless they tolerate this taint and select the label.
node_taint=kreload.dev/real-node
# The sandbox image, built from tests/cluster/node/pause and imported at up.
sandbox_image=kreload.test/pause:1
node_cni_dirs=(/usr/lib/cni /opt/cni/bin)

# nsenter into the node's network namespace only (the mount namespace stays the host's, so the
# kubelet's volume mounts and containerd's rootfs mounts see each other).
in_node() { nsenter --net="$node_netns" -- "$@"; }

# Why this machine cannot run the real node; empty output when it can.
node_unsupported() {
  local c
  [ "$(id -u)" = 0 ] || { echo "it needs root (it creates network namespaces, cgroups and mounts)"; return; }
  [ "$(uname -s)" = Linux ] || { echo "it needs Linux"; return; }
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    echo "cgroup v2 (unified) is not supported by this harness yet (only cgroup v1 was tried)"; return
  fi
  for c in cpu cpuacct cpuset memory pids freezer devices; do
    [ -d "/sys/fs/cgroup/$c" ] || { echo "the cgroup v1 controller '$c' is not mounted at /sys/fs/cgroup/$c"; return; }
  done
  grep -qw overlay /proc/filesystems || { echo "the kernel has no overlay filesystem"; return; }
  for c in runc iptables ip nsenter unshare mount umount; do
    command -v "$c" >/dev/null || { echo "'$c' is missing (tests/cluster/node/prereqs installs the packages)"; return; }
  done
  [ -n "$(node_cni_bin)" ] || { echo "the CNI plugins bridge, host-local and loopback are missing (tests/cluster/node/prereqs)"; return; }
  unshare --net true 2>/dev/null || { echo "cannot create a network namespace (unshare --net)"; return; }
  local other
  other=$(cat "$node_registry" 2>/dev/null || true)
  if [ -n "$other" ] && [ "$other" != "$state" ] && [ -f "$other/kubelet.pid" ] &&
    kill -0 "$(cat "$other/kubelet.pid")" 2>/dev/null; then
    echo "another harness runs a real node on this machine (state $other); one at a time"; return
  fi
}

node_cni_bin() {
  local d
  for d in "${node_cni_dirs[@]}"; do
    if [ -x "$d/bridge" ] && [ -x "$d/host-local" ] && [ -x "$d/loopback" ]; then echo "$d"; return; fi
  done
}

# Extra kube-apiserver flags for the node (egress into its namespace, kubelet client identity).
node_apiserver_flags() {
  cat >"$node_dir/egress.yaml" <<EOF
apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
# Pods, Services and kubelets live in the node's network namespace: reach them through nodebridge.
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: $node_dir/egress.sock
# Webhooks with a url (local mode, 127.0.0.1 on the host) and etcd stay direct.
- name: controlplane
  connection:
    proxyProtocol: Direct
- name: etcd
  connection:
    proxyProtocol: Direct
EOF
  printf '%s\n' \
    "--egress-selector-config-file=$node_dir/egress.yaml" \
    "--kubelet-preferred-address-types=InternalIP" \
    "--kubelet-client-certificate=$pki/apiserver-kubelet-client.crt" \
    "--kubelet-client-key=$pki/apiserver-kubelet-client.key"
}

# Client certificates for the kubelet (a node identity, for the Node authorizer), kube-proxy
# (bound by the default system:node-proxier ClusterRoleBinding) and the API server's calls to the
# kubelet. Uses up's sign().
node_certs() {
  sign kubelet "/O=system:nodes/CN=system:node:$node_name" client
  sign kube-proxy "/CN=system:kube-proxy" client
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" client
  local who
  for who in kubelet kube-proxy; do
    ( umask 077
      cat >"$node_dir/$who.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kreload
  cluster:
    server: https://127.0.0.1:$apiserver_port
    certificate-authority: $pki/ca.crt
users:
- name: $who
  user:
    client-certificate: $pki/$who.crt
    client-key: $pki/$who.key
contexts:
- name: kreload
  context: {cluster: kreload, user: $who}
current-context: kreload
EOF
    )
  done
}

node_hierarchies() {
  local h
  for h in /sys/fs/cgroup/*/; do
    h=${h%/}
    [ -f "$h/cgroup.procs" ] && echo "$h"
  done
}

# The node's cgroup in every hierarchy, with a child `daemons` for containerd, the kubelet and
# kube-proxy (the kubelet puts the pods under `kubepods`). Everything the node starts stays inside,
# so down can find and stop all of it.
node_make_cgroups() {
  local h d
  for h in $(node_hierarchies); do
    for d in "$h/$node_cgroup" "$h/$node_cgroup/daemons"; do
      mkdir -p "$d"
      if [ -f "$d/cpuset.cpus" ]; then
        cat "$(dirname "$d")/cpuset.cpus" >"$d/cpuset.cpus"
        cat "$(dirname "$d")/cpuset.mems" >"$d/cpuset.mems"
      fi
    done
  done
}

# Moves the calling process into the node's daemons cgroup (used before exec).
node_join_cgroups() {
  local h
  for h in $(node_hierarchies); do echo "$BASHPID" >"$h/$node_cgroup/daemons/cgroup.procs"; done
}

node_write_configs() {
  local cni_bin runc_bin
  cni_bin=$(node_cni_bin)
  runc_bin=$(command -v runc)
  mkdir -p "$node_dir/cni/net.d" "$node_dir/pod-logs" "$node_dir/kubelet" "$node_dir/volume-plugins" "$node_rundir"
  : >"$node_dir/resolv.conf" # pods resolve nothing: there is nothing to reach
  cat >"$node_dir/cni/net.d/10-kreload.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "kreload",
  "plugins": [{
    "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pod_cidr"}]],
             "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$node_dir/cni/ipam"}
  }]
}
EOF
  cat >"$node_dir/containerd.toml" <<EOF
# containerd for the harness's real node: every path under the state dir.
version = 4
root = '$node_dir/containerd/root'
state = '$node_dir/containerd/state'
imports = []
disabled_plugins = ['io.containerd.nri.v1.nri']

[plugins]
  [plugins.'io.containerd.server.v1.grpc']
    address = '$node_dir/containerd.sock'
  [plugins.'io.containerd.server.v1.ttrpc']
    address = '$node_dir/containerd.sock.ttrpc'
  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = '$node_rundir/s'
  [plugins.'io.containerd.internal.v1.opt']
    path = '$node_dir/containerd/opt'
  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = '$node_dir/containerd/image-verifier'
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$sandbox_image'
  [plugins.'io.containerd.cri.v1.runtime']
    # runc cannot lower oom_score_adj without CAP_SYS_RESOURCE, which some VMs withhold.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$runc_bin'
          Root = '$node_dir/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$cni_bin']
      conf_dir = '$node_dir/cni/net.d'
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '$node_ip'
EOF
  cat >"$node_dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$node_dir/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /$node_cgroup
# cgroup v1 machines (the kubelet refuses v1 unless told), no swap accounting.
failCgroupV1: false
failSwapOn: false
podLogsDir: $node_dir/pod-logs
resolvConf: $node_dir/resolv.conf
registerWithTaints:
- {key: $node_taint, value: "true", effect: NoSchedule}
# Nothing is pulled and the disk may be nearly full: never collect images, evict only at the end.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
maxPods: 30
EOF
  cat >"$node_dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $node_dir/kube-proxy.kubeconfig}
hostnameOverride: $node_name
mode: iptables
clusterCIDR: $pod_cidr
bindAddress: $node_ip
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Zeroes: kube-proxy then changes no conntrack sysctl (some of them are host-wide).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
iptables: {localhostNodePorts: false}
oomScoreAdj: 0
EOF
}

node_ctr() { "$node_bin/ctr" --address "$node_dir/containerd.sock" --namespace k8s.io "$@"; }

# Imports an OCI archive into the node's containerd (the images pods use, never pulled).
node_import() { node_ctr images import "$1" >&2; }

node_up() {
  local reason
  mkdir -p "$node_dir"
  "$cluster_dir/node/host-state" >"$node_dir/host-before"
  echo "$state" >"$node_registry"
  node_write_configs

  # The node's network namespace, held by a bind mount in the state dir (on a private mount, so
  # that the bind cannot propagate anywhere else).
  mkdir -p "$node_dir/netns"
  mount --bind "$node_dir/netns" "$node_dir/netns"
  mount --make-private "$node_dir/netns"
  touch "$node_netns"
  unshare --net="$node_netns" true
  # The node's IP on its loopback device (not every kernel has the dummy driver), and a blackhole
  # default route: what is not the node or its pods is nowhere.
  in_node ip link set lo up
  in_node ip addr add "$node_ip/32" dev lo
  in_node ip route add blackhole default
  # Service IPs must route somewhere for connect() to send a packet that kube-proxy's DNAT (nat
  # OUTPUT) can rewrite to a pod; from the node's own address, so that the pod can answer.
  in_node ip route add "$node_service_cidr" dev lo src "$node_ip"
  node_make_cgroups

  start_bin=$node_bin
  start nodebridge --netns="$node_netns" --apiserver="127.0.0.1:$apiserver_port" \
    --egress="$node_dir/egress.sock" --api="127.0.0.1:$apiserver_port" --api="$node_ip:$apiserver_port"
  wait_for nodebridge "forwarding" test -S "$node_dir/egress.sock"

  start_wrap=(nsenter --net="$node_netns" --)
  start_cgroup=true
  # containerd finds its shim (containerd-shim-runc-v2) on PATH.
  PATH=$node_bin:$PATH
  start containerd --config="$node_dir/containerd.toml" --log-level=warn
  wait_for containerd "serving" node_ctr version
  "$cluster_dir/../images/oci-archive" "$node_dir/pause.tar" "$sandbox_image" "$node_bin/pause" /pause 65535:65535 2>/dev/null
  node_import "$node_dir/pause.tar"

  start kubelet --config="$node_dir/kubelet.yaml" --kubeconfig="$node_dir/kubelet.kubeconfig" \
    --root-dir="$node_dir/kubelet" --cert-dir="$node_dir/kubelet/pki" \
    --volume-plugin-dir="$node_dir/volume-plugins" \
    --hostname-override="$node_name" --node-ip="$node_ip" \
    --node-labels="type=real,$node_taint=true" --oom-score-adj=0 --v=1
  start kube-proxy --config="$node_dir/kube-proxy.yaml" --v=1
  start_wrap=()
  start_cgroup=false
  start_bin=$bin

  # Pods reach the API server through the `kubernetes` Service (10.0.0.1:443): with the endpoint
  # reconciler off, its endpoint is written here, the node's IP, where nodebridge listens.
  kctl apply -f - >&2 <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels:
    kubernetes.io/service-name: kubernetes
    endpointslice.kubernetes.io/managed-by: kreload-harness
addressType: IPv4
endpoints:
- addresses: [$node_ip]
  conditions: {ready: true}
ports:
- {name: https, port: $apiserver_port, protocol: TCP}
EOF
  node_ready() {
    [ "$(kctl get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
  }
  proxy_synced() { in_node iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q 'default/kubernetes:https'; }
  wait_for kubelet "node $node_name Ready" node_ready
  wait_for kube-proxy "Services programmed" proxy_synced
  echo real >"$state/node-mode"
}

# Stops the node and undoes every host-wide change; prints what still differs from before up.
# Safe to run on a half-started node, and when there is none.
node_down() {
  [ -d "$node_dir" ] || return 0
  local h pid left tries m
  stop_tier kube-proxy kubelet
  stop_tier containerd nodebridge
  # What containerd started (shims, pause and app containers) outlives it: stop it all, by the
  # cgroups it runs in (every one of them is under the node's, so nothing else is touched).
  for tries in 1 2 3 4 5 6 7 8 9 10; do
    left=$(node_cgroup_pids)
    [ -n "$left" ] || break
    [ "$tries" = 1 ] && log "stopping $(wc -w <<<"$left") leftover node processes (containers and shims)"
    for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
    sleep 0.3
  done
  [ -z "$(node_cgroup_pids)" ] || log "warning: processes left in the node's cgroups: $(node_cgroup_pids)"

  # Mounts under the state dir, newest first: volumes, rootfs overlays, sandbox shm, pod netns,
  # the kubelet's root dir bind, and the node's own netns.
  for tries in 1 2 3; do
    m=$(awk -v p="$state/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | tac)
    [ -n "$m" ] || break
    while read -r h; do
      umount "$h" 2>/dev/null || umount -l "$h" 2>/dev/null || true
    done <<<"$m"
  done

  # Cgroups, deepest first (a cgroup goes once it has no tasks and no children).
  for h in $(node_hierarchies); do
    [ -d "$h/$node_cgroup" ] && find "$h/$node_cgroup" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [ -d "$h/$node_cgroup" ] && log "warning: could not remove the cgroup $h/$node_cgroup"
  done

  rm -rf "$node_rundir"
  if [ -f "$node_dir/host-before" ]; then
    node_restore_host "$node_dir/host-before"
  fi
  if [ "$(cat "$node_registry" 2>/dev/null)" = "$state" ]; then rm -f "$node_registry"; fi
  rm -f "$state/node-mode"
  node_check_host
}

# Process ids in the node's cgroups (the pids hierarchy sees every task).
node_cgroup_pids() {
  local d=/sys/fs/cgroup/pids/$node_cgroup
  [ -d "$d" ] || return 0
  find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | tr '\n' ' '
}

# Puts back the sysctls that changed since up, and removes the fixed paths that did not exist
# before up.
node_restore_host() {
  local before=$1 now key value p
  now=$("$cluster_dir/node/host-state")
  while IFS= read -r line; do
    key=${line%% = *}
    value=${line#* = }
    log "restoring sysctl $key = $value (was $(sysctl -n "$key" 2>/dev/null | tr '\t' ' '))"
    sysctl -q -w "$key=$value" >/dev/null 2>&1 || log "warning: could not restore $key"
  done < <(comm -23 <(node_section sysctl <"$before" | sort) <(node_section sysctl <<<"$now" | sort))
  while read -r p; do
    if [ -e "$p" ] || [ -L "$p" ]; then
      log "removing $p (created by the node)"
      # The device-plugin socket and container log links are the node's; nothing else is in them.
      rm -rf -- "$p"
    fi
  done < <(node_section "fixed paths" <"$before" | awk '$1=="absent"{print $2}')
}

# One section of host-state's output.
node_section() { awk -v s="== $1" '/^== /{on = ($0 == s); next} on'; }

node_check_host() {
  local diff
  if diff=$(diff <(cat "$node_dir/host-before") <("$cluster_dir/node/host-state")); then
    log "host restored: sysctls, mounts, iptables, links, cgroups and fixed paths as before up"
    return 0
  fi
  log "error: the host differs from before up:"
  printf '%s\n' "$diff" >&2
  return 1
}
