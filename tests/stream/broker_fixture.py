"""tests/stream/broker_fixture.py — start a `streamrec broker` process from a Python test.

    from broker_fixture import Broker
    with Broker("/path/to/streamrec", brokers=1, topics={"events": 8}) as b:
        b.bootstrap        # "127.0.0.1:PORT[,...]"
        ...                # the broker is stopped (SIGTERM, waited) on exit

Broker.stop() returns the exit status (0 expected). Use /usr/bin/python3 (confluent_kafka).
Mind the mock's limits (DESIGN.md section 6): about 5 MiB per partition; a topic auto-created
by a client gets 4 partitions.
"""
import select
import signal
import subprocess


class Broker:
    def __init__(self, streamrec, brokers=3, topics=None, wait_s=15.0):
        args = [streamrec, "broker", "--brokers", str(brokers)]
        for name, parts in (topics or {}).items():
            args += ["--topic", "%s:%d" % (name, parts)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], wait_s)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("bootstrap.servers="):
            self.stop()
            raise RuntimeError("streamrec broker did not start: %r %s"
                               % (line, self.proc.stderr.read().decode(errors="replace")))
        self.bootstrap = line.strip().split("=", 1)[1]

    def stop(self):
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
