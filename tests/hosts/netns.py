"""Network namespaces as hosts on one machine, for tests that need a real
network between processes: tests/hosts/hosts.py (the several-hosts rig) uses
it, and any other test may (two hosts for torch.distributed, say).

    from netns import Net
    with Net("atg", "10.78.0") as net:            # bridge atg-br, 10.78.0.1 on the machine's side
        a = net.add("rank-0")                     # namespace atg-rank-0, address 10.78.0.2 on its eth0
        b = net.add("rank-1")                     # 10.78.0.3
        p = a.popen(["prog", "--listen", a.ip])   # subprocess.Popen inside the namespace
        b.run(["prog", "--connect", a.ip])        # subprocess.run inside it
        b.link(False); b.link(True)               # cable out, cable in
        b.cut([a.ip]); b.mend([a.ip])             # silent partition between two hosts only
        a.netem("delay 50ms 20ms loss 1%")        # tc netem on both ends of a's link (NetemUnavailable)

Each host is a namespace NAME-HOST joined to the bridge by a veth pair (eth0
inside, v<NAME><n> outside). Loopback stays down unless add(..., lo=True):
then nothing can reach a peer through 127.0.0.1 by mistake, every address a
process uses is a namespace's own. A Net holds an exclusive lock
(/run/lock/atelier-netns-NAME.lock) from start to teardown, so a second run
with the same NAME refuses to start instead of tearing the first one's
namespaces down; what a crashed earlier run left behind (namespaces NAME-*,
the bridge) is removed at start. teardown() (also on exit from the with
block, at interpreter exit and on SIGTERM/SIGINT) kills every process still
in the namespaces and deletes them. Needs root and iproute2.
"""
import atexit
import errno
import fcntl
import os
import signal
import subprocess

DEAD_GATEWAY = 250  # host number of an address nobody holds: routes through it drop silently


class Busy(RuntimeError):
    """Another run holds this Net's namespaces (its lock)."""


class NetemUnavailable(RuntimeError):
    """This kernel has no sch_netem (CONFIG_NET_SCH_NETEM)."""


def sh(*argv, check=True):
    r = subprocess.run(list(argv), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), r.stderr.strip()))
    return r


def can_run():
    """None when namespaces can be made here, else why not (for a skip message)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, a bridge)"
    if sh("ip", "-V", check=False).returncode != 0:
        return "needs iproute2 (ip)"
    return None


class Host:
    def __init__(self, net, name, n):
        self.net = net
        self.name = name
        self.n = n
        self.ns = "%s-%s" % (net.name, name)
        self.ip = "%s.%d" % (net.subnet, n)
        self.veth = ("v%s%d" % (net.name, n))[:15]
        self.cut_from = set()

    def argv(self, argv):
        return ["ip", "netns", "exec", self.ns] + list(argv)

    def run(self, argv, **kw):
        return subprocess.run(self.argv(argv), **kw)

    def popen(self, argv, **kw):
        """ip netns exec replaces itself with argv: the Popen's pid is the program's."""
        return subprocess.Popen(self.argv(argv), **kw)

    def ip_cmd(self, *args, check=True):
        return sh("ip", "-n", self.ns, *args, check=check)

    def link(self, up):
        """Cable in or out: the machine's end of the veth pair up or down (the
        namespace's eth0 loses its carrier; its packets go nowhere)."""
        sh("ip", "link", "set", self.veth, "up" if up else "down")

    def cut(self, ips, both=True):
        """A partition between this host and the hosts at ips, nobody else:
        routes to them through an address nobody holds, so packets are dropped
        without an error (ARP never resolves), as on a broken network. With
        both, the peers' routes back are cut too."""
        gw = "%s.%d" % (self.net.subnet, DEAD_GATEWAY)
        for ip in ips:
            self.ip_cmd("route", "replace", ip + "/32", "via", gw, "dev", "eth0")
            self.cut_from.add(ip)
            if both:
                self.net.by_ip(ip).cut([self.ip], both=False)

    def mend(self, ips, both=True):
        for ip in ips:
            self.ip_cmd("route", "del", ip + "/32", check=False)
            self.cut_from.discard(ip)
            if both:
                self.net.by_ip(ip).mend([self.ip], both=False)

    def netem(self, spec):
        """tc netem SPEC (e.g. "delay 50ms 20ms loss 1%") on both ends of the
        link: what the host sends and what it receives."""
        for argv in (["tc", "qdisc", "replace", "dev", self.veth, "root", "netem"],
                     ["ip", "netns", "exec", self.ns, "tc", "qdisc", "replace", "dev", "eth0", "root", "netem"]):
            r = sh(*(argv + spec.split()), check=False)
            if r.returncode != 0:
                if "unknown" in r.stderr.lower():
                    raise NetemUnavailable("tc netem: %s (kernel without CONFIG_NET_SCH_NETEM)" % r.stderr.strip())
                raise RuntimeError("tc netem: " + r.stderr.strip())

    def netem_clear(self):
        sh("tc", "qdisc", "del", "dev", self.veth, "root", check=False)
        sh("ip", "netns", "exec", self.ns, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)

    def pids(self):
        r = sh("ip", "netns", "pids", self.ns, check=False)
        return [int(p) for p in r.stdout.split()]


def netem_available():
    """Whether tc netem works here (probed on a scratch namespace's loopback)."""
    ns = "atelier-netem-probe-%d" % os.getpid()
    if sh("ip", "netns", "add", ns, check=False).returncode != 0:
        return False
    try:
        return sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                  check=False).returncode == 0
    finally:
        sh("ip", "netns", "del", ns, check=False)


class Net:
    def __init__(self, name="atelier", subnet="10.77.0"):
        assert name.isalnum() and len(name) <= 8, "NAME: letters and digits, at most 8 (interface names)"
        self.name = name
        self.subnet = subnet
        self.bridge = name + "-br"
        self.hosts = {}
        self.lock = None
        self.started = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.teardown()

    def start(self):
        os.makedirs("/run/lock", exist_ok=True)
        self.lock = open("/run/lock/atelier-netns-%s.lock" % self.name, "w")
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self.lock.close()
            self.lock = None
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise Busy("another run holds the %s namespaces (/run/lock/atelier-netns-%s.lock); "
                                   "refusing to run twice at once" % (self.name, self.name))
            raise
        self.started = True
        atexit.register(self.teardown)
        for sig in (signal.SIGTERM, signal.SIGINT):
            if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
                signal.signal(sig, _exit_on_signal)
        self._remove_leftovers()
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", "%s.1/24" % self.subnet, "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        return self

    def add(self, name, lo=False):
        n = len(self.hosts) + 2
        h = Host(self, name, n)
        sh("ip", "netns", "add", h.ns)
        sh("ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
        sh("ip", "link", "set", h.veth, "master", self.bridge, "up")
        h.ip_cmd("addr", "add", h.ip + "/24", "dev", "eth0")
        h.ip_cmd("link", "set", "eth0", "up")
        if lo:
            h.ip_cmd("link", "set", "lo", "up")
        self.hosts[name] = h
        return h

    def by_ip(self, ip):
        for h in self.hosts.values():
            if h.ip == ip:
                return h
        raise KeyError(ip)

    def _namespaces(self):
        out = sh("ip", "netns", "list", check=False).stdout
        return [line.split()[0] for line in out.splitlines() if line.startswith(self.name + "-")]

    def _remove_leftovers(self):
        for ns in self._namespaces():
            _kill_ns(ns)
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)

    def teardown(self):
        """Every process in the namespaces killed, the namespaces and the
        bridge deleted, the lock released. Safe to call twice."""
        if not self.started:
            return
        self.started = False
        self._remove_leftovers()
        self.hosts = {}
        if self.lock:
            self.lock.close()
            self.lock = None


def _kill_ns(ns):
    pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
    for p in pids:
        try:
            os.kill(int(p), signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in pids:  # reap our own children, so none is left a zombie
        try:
            os.waitpid(int(p), os.WNOHANG)
        except ChildProcessError:
            pass


def _exit_on_signal(signo, frame):
    raise SystemExit(128 + signo)
