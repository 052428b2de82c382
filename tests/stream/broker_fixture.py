"""tests/stream/broker_fixture.py — start a `streamrec broker` process from a Python test.

    from broker_fixture import Broker
    with Broker("/path/to/streamrec", brokers=1, topics={"events": 8}) as b:
        b.bootstrap        # "127.0.0.1:PORT[,...]"
        ...                # the broker is stopped (SIGTERM, waited) on exit

Broker.stop() returns the exit status (0 expected). With control=True the broker runs with
--control and b.ctl("down 1") sends one fault-injection command ("down ID", "up ID",
"rtt ID MS", "errors Produce NOT_LEADER_FOR_PARTITION,REQUEST_TIMED_OUT", "clear Produce",
"topic NAME:PARTITIONS"; see `streamrec broker --help`); it raises on anything but "ok". Use /usr/bin/python3 (confluent_kafka).
Mind the mock's limits (DESIGN.md section 6): about 5 MiB per partition; a topic auto-created
by a client gets 4 partitions.
"""
import select
import signal
import subprocess
import tempfile


class Broker:
    def __init__(self, streamrec, brokers=3, topics=None, wait_s=15.0, control=False):
        args = [streamrec, "broker", "--brokers", str(brokers)] + (["--control"] if control else [])
        for name, parts in (topics or {}).items():
            args += ["--topic", "%s:%d" % (name, parts)]
        # Unbuffered stdout: select() must see every reply line; stderr to a file (a full pipe
        # would block the broker).
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, bufsize=0,
                                     stdin=subprocess.PIPE if control else subprocess.DEVNULL)
        ready, _, _ = select.select([self.proc.stdout], [], [], wait_s)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("bootstrap.servers="):
            self.stop()
            self.log.seek(0)
            raise RuntimeError("streamrec broker did not start: %r %s"
                               % (line, self.log.read().decode(errors="replace")))
        self.bootstrap = line.strip().split("=", 1)[1]

    def ctl(self, command, timeout_s=10.0):
        self.proc.stdin.write((command + "\n").encode())
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        reply = self.proc.stdout.readline().decode().strip() if ready else ""
        if reply != "ok":
            raise RuntimeError("broker ctl %r: %s" % (command, reply or "no reply"))

    def stop(self):
        if self.proc.stdin:
            self.proc.stdin.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False
