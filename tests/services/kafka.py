"""A real Apache Kafka broker for tests: KRaft, one node (broker and controller), on 127.0.0.1.

The jars come from Maven Central through ``scripts/kafka-jars`` (cached; see there for the pinned
version). ``KafkaBroker(workdir)`` writes ``server.properties`` and a log4j2 config into
``workdir``, formats ``workdir/kafka-logs`` once, and runs ``java -cp libs/* kafka.Kafka``.
``start()`` returns when a real client (aiokafka's admin client) gets cluster metadata with the
broker in it and a group coordinator; ``stop()`` is a graceful SIGTERM, ``kill()`` a SIGKILL,
and ``start()`` again comes back on the same port, cluster and log directory. The broker's own
log is ``workdir/broker.log`` (JVM output: ``workdir/broker.out``).

Topics are not created on first use (``auto.create.topics.enable=false``) unless
``auto_create_topics=True``: production brokers often forbid it, so the code under test must
create its topics (or the test does, with ``create_topics``).
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.services import (
    REPO_ROOT,
    ServerProcess,
    ServiceError,
    free_port,
    log_tail,
    port_open,
)

KAFKA_JARS = REPO_ROOT / "scripts" / "kafka-jars"

# A small heap and the serial GC (few threads, little memory; test traffic is light). C1-only
# (-XX:TieredStopAtLevel=1) was measured: no faster start here, so C2 stays on.
JVM_OPTIONS = (
    "-Xms64m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:-UsePerfData",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

_libs: Path | None = None


def kafka_libs() -> Path:
    """The directory of the broker's jars, resolved by ``scripts/kafka-jars`` if need be.

    Raises ``ServiceError`` with the script's message (e.g. how to install java or mvn).
    """
    global _libs
    if _libs is not None and any(_libs.glob("kafka_2.13-*.jar")):
        return _libs
    if shutil.which("bash") is None:
        raise ServiceError("bash is needed to run scripts/kafka-jars")
    started = time.monotonic()
    try:
        proc = subprocess.run(
            ["bash", str(KAFKA_JARS)], capture_output=True, text=True, check=False, timeout=900
        )
    except subprocess.TimeoutExpired as e:
        raise ServiceError(f"scripts/kafka-jars did not finish in 900 s: {e.stderr!r}") from e
    if proc.stderr:
        sys.stderr.write(proc.stderr)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ServiceError(
            f"scripts/kafka-jars failed (exit {proc.returncode}); the Kafka broker cannot start:\n"
            f"{proc.stderr.strip()}"
        )
    libs = Path(lines[-1])
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise ServiceError(f"scripts/kafka-jars printed {libs}, which holds no kafka_2.13 jar")
    elapsed = time.monotonic() - started
    if elapsed > 2:
        sys.stderr.write(f"kafka jars ready in {elapsed:.1f} s: {libs}\n")
    _libs = libs
    return libs


def java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServiceError(
            "java not found: the Kafka broker needs Java 17+ "
            "(Debian: apt-get install openjdk-17-jre-headless maven)"
        )
    return java


def new_cluster_id() -> str:
    """A random Kafka cluster id: 16 bytes, URL-safe base64 without padding, no leading '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


LOG4J2_PROPERTIES = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
# Every client and the broker dump their whole config at INFO (hundreds of lines); the broker's
# is server.properties beside this file.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""


#: Broker settings that let test consumer groups use short sessions (``session_timeout_ms`` of
#: one or two seconds), so a killed member is noticed within seconds rather than ten.
FAST_GROUPS = {"group.min.session.timeout.ms": "1000"}


class KafkaBroker(ServerProcess):
    """One KRaft Kafka node on 127.0.0.1; see the module docstring.

    Use ``async with KafkaBroker(tmp_path) as broker:`` or ``await start()`` / ``await stop()``.
    """

    label = "Kafka broker"
    log_name = "broker"
    log_lines = 60
    stop_grace_s = 30.0

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        num_partitions: int = 1,
        auto_create_topics: bool = False,
        extra_properties: Mapping[str, str] | None = None,  # not ports, listeners or log.dirs
        startup_timeout: float = 60.0,
    ) -> None:
        workdir = Path(workdir or tempfile.mkdtemp(prefix="pricestream-kafka-"))
        super().__init__(workdir, startup_timeout=startup_timeout)
        self.num_partitions = num_partitions
        self.auto_create_topics = auto_create_topics
        self.extra_properties = dict(extra_properties or {})
        self.controller_port = 0
        self.cluster_id = ""

    # -- where things are -------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        if not self.port:
            raise ServiceError("the Kafka broker has not been started yet")
        return f"127.0.0.1:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "kafka-logs"

    @property
    def config_file(self) -> Path:
        return self.workdir / "server.properties"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> float:
        """Start the broker (again, on the same port and log dir) and wait until it serves.

        Returns the seconds it took. Raises ``ServiceError`` with the log tail on failure.
        """
        if self.running:
            raise ServiceError(f"the Kafka broker at {self.bootstrap} is already running")
        started = time.monotonic()
        libs = await asyncio.to_thread(kafka_libs)
        java = java_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
            self.controller_port = free_port()
            while self.controller_port == self.port:
                self.controller_port = free_port()
        for port in (self.port, self.controller_port):
            if port_open(port):
                raise ServiceError(f"port {port} on 127.0.0.1 is taken; cannot start Kafka there")
        self._write_config()
        classpath = f"{libs}/*"
        jvm = [
            java,
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
        ]
        if not (self.log_dir / "meta.properties").exists():
            await self._format(jvm, classpath)
        argv = [*jvm, "-cp", classpath, "kafka.Kafka", str(self.config_file)]
        return await self._launch(argv, started=started)

    # -- helpers for tests ------------------------------------------------------------------

    def admin(self, **kwargs: Any) -> Any:
        """An unstarted ``AIOKafkaAdminClient`` for this broker."""
        return AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **kwargs)

    async def create_topics(
        self,
        *names: str,
        partitions: int | None = None,
        configs: Mapping[str, str] | None = None,
    ) -> None:
        """Create topics (replication factor 1) and wait until each has a leader everywhere."""
        admin = self.admin()
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        name,
                        partitions or self.num_partitions,
                        1,
                        topic_configs=dict(configs or {}),
                    )
                    for name in names
                ]
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while True:
                described = await admin.describe_topics(list(names))
                if all(
                    t["error_code"] == 0
                    and t["partitions"]
                    and all(p["leader"] >= 0 for p in t["partitions"])
                    for t in described
                ):
                    return
                if loop.time() > deadline:
                    raise ServiceError(f"topics {names} got no leaders in 30 s: {described}")
                await asyncio.sleep(0.1)
        finally:
            await admin.close()

    # -- internals --------------------------------------------------------------------------

    def _write_config(self) -> None:
        if not self.cluster_id:
            self.cluster_id = new_cluster_id()
        properties: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "num.partitions": str(self.num_partitions),
            "default.replication.factor": "1",
            "auto.create.topics.enable": str(self.auto_create_topics).lower(),
            # One node: every internal topic has one replica, and few partitions, so the
            # group coordinator is ready in a moment.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After a SIGKILL the controller keeps the dead broker's registration until its
            # session times out (default 9 s) and refuses the restarted one until then.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
            # Fewer threads and a small cleaner buffer (default 128 MB) for a 512 MB heap.
            "num.network.threads": "2",
            "num.io.threads": "4",
            "background.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            **self.extra_properties,
        }
        self.config_file.write_text(
            "".join(f"{key}={value}\n" for key, value in properties.items())
        )
        (self.workdir / "log4j2.properties").write_text(LOG4J2_PROPERTIES.format(log=self.log_file))

    async def _format(self, jvm: list[str], classpath: str) -> None:
        """Format the KRaft log dir (what ``kafka-storage.sh format`` does)."""
        if self.log_dir.exists():
            shutil.rmtree(self.log_dir)  # half-formatted: no meta.properties
        proc = await asyncio.create_subprocess_exec(
            *jvm,
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            self.cluster_id,
            "--config",
            str(self.config_file),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.workdir,
        )
        output, _ = await proc.communicate()
        text = output.decode(errors="replace")
        with self.out_file.open("a") as out:
            out.write(text)
        if proc.returncode != 0 or not (self.log_dir / "meta.properties").exists():
            raise ServiceError(
                f"formatting the Kafka log dir {self.log_dir} failed (exit {proc.returncode}):\n"
                f"{text[-4000:]}\n{log_tail(self.log_file)}"
            )

    async def _wait_ready(self, deadline: float) -> None:
        """Until the port is open, metadata lists this broker and a group coordinator answers."""
        assert self._proc is not None
        last_error = "port not open yet"
        while True:
            if self._proc.poll() is not None:
                raise ServiceError(
                    f"the Kafka broker exited with code {self._proc.returncode} while starting"
                    f"\n{self.logs()}"
                )
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"the Kafka broker at {self.bootstrap} was not ready after "
                    f"{self.startup_timeout:.0f} s ({last_error})\n{self.logs()}"
                )
            if port_open(self.port):
                try:
                    await asyncio.wait_for(self._probe(), timeout=5)
                    return
                except Exception as e:
                    last_error = f"{type(e).__name__}: {e}"
            await asyncio.sleep(0.1)

    async def _probe(self) -> None:
        admin = self.admin(request_timeout_ms=3000, retry_backoff_ms=50)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            brokers = cluster.get("brokers") or []
            if not brokers:
                raise ServiceError("metadata lists no broker yet")
            # Creates __consumer_offsets on the first start; loads it on a restart.
            await admin.find_coordinator("pricestream-readiness")
        finally:
            await admin.close()


__all__ = ["KafkaBroker", "kafka_libs", "new_cluster_id"]


if __name__ == "__main__":  # pragma: no cover - manual check: python -m tests.services.kafka

    async def _main() -> None:
        broker = KafkaBroker()
        took = await broker.start()
        print(f"Kafka at {broker.bootstrap} in {took:.1f} s; logs in {broker.workdir}")
        await broker.stop()
        took = await broker.start()
        print(f"restarted in {took:.1f} s")
        await broker.stop()

    asyncio.run(_main())
