/* sr_config_keys.h — the one list of configuration keys: name, kind and allowed values, default
 * (NULL = none) and meaning. Included with a definition of
 * SR_CONFIG_KEY(name, kind, allowed, default, help). Values are checked against kind + allowed
 * at start-up (sr_config_check, DESIGN §5) and by the typed getters at use, with one parser:
 *   TEXT      any string                  LIST     comma list of names
 *   INT       integer, allowed "lo..hi" (hi may be empty: no upper bound)
 *   BOOL      true/false (also 1/0, yes/no, on/off)
 *   ENUM      one of allowed, "|"-separated
 *   TOPIC     one Kafka topic name (allowed "opt": or empty)
 *   HOSTPORT  host:port, [v6]:port or :port (all interfaces); empty turns it off
 *   DIR/FILE  an existing directory/file (allowed "opt": or empty)
 * The user guide's key table is generated from this list (`streamrec config --list`), so keep
 * help one line. Keys under `kafka.` are passed to librdkafka and are not listed here, except
 * the defaults streamrec sets for them. */
SR_CONFIG_KEY("model.bundle",            DIR,  "",       NULL,        "model bundle directory (required)")
SR_CONFIG_KEY("input.topic",             TOPIC, "",      "events",    "topic of user events (one topic)")
SR_CONFIG_KEY("output.topic",            TOPIC, "",      "recommendations", "topic recommendations are published to")
SR_CONFIG_KEY("dlq.topic",               TOPIC, "opt",   "",          "dead-letter topic for undecodable events; empty turns it off")
SR_CONFIG_KEY("input.format",            ENUM, "json|avro|avro-confluent", "json", "event encoding: json, avro (bare binary), avro-confluent")
SR_CONFIG_KEY("output.format",           ENUM, "json|avro|avro-confluent", "json", "recommendation encoding: json, avro, avro-confluent")
SR_CONFIG_KEY("input.avro.writer_schema", FILE, "opt",   "",          "writer schema file for input.format=avro (default: schemas/user_event.avsc)")
SR_CONFIG_KEY("output.avro.schema_id",   INT,  "0..2147483647", "1",  "schema id written in Confluent framing of recommendations")
SR_CONFIG_KEY("schemas.registry.dir",    DIR,  "opt",    "",          "directory of <id>.avsc writer schemas for avro-confluent input")
SR_CONFIG_KEY("kafka.group.id",          TEXT, "",       "streamrec", "consumer group")
SR_CONFIG_KEY("batch.max.events",        INT,  "1..1000000", "256",   "micro-batch size cap (events)")
SR_CONFIG_KEY("batch.max.wait.ms",       INT,  "0..60000", "5",       "deadline from the first event of a batch (ms)")
SR_CONFIG_KEY("session.event_types",     LIST, "",       "view,click,add_to_cart,purchase", "event types appended to a session")
SR_CONFIG_KEY("recs.trigger_types",      LIST, "",       "view,click,add_to_cart", "event types that produce a recommendation")
SR_CONFIG_KEY("session.max_len",         INT,  "1..1000000", NULL,    "items kept per session (default: the model's max_len)")
SR_CONFIG_KEY("session.ttl.ms",          INT,  "0..",    "1800000",   "event-time inactivity after which a session expires (ms)")
SR_CONFIG_KEY("recs.k",                  INT,  "1..1000", "10",       "items per recommendation")
SR_CONFIG_KEY("recs.exclude_seen",       BOOL, "",       "true",      "drop items already in the session")
SR_CONFIG_KEY("recs.require_available",  BOOL, "",       "false",     "drop items whose `available` attribute is 0")
SR_CONFIG_KEY("state.backend",           ENUM, "rocksdb|memory", "rocksdb", "session store: rocksdb or memory")
SR_CONFIG_KEY("state.dir",               TEXT, "",       "./streamrec-state", "RocksDB directory")
SR_CONFIG_KEY("state.cache.sessions",    INT,  "0..",    "100000",    "sessions kept in the write-back cache")
SR_CONFIG_KEY("state.changelog",         BOOL, "",       "true",      "run: produce every state change to a compacted changelog topic and restore assigned partitions from it (state follows partitions)")
SR_CONFIG_KEY("state.changelog.topic",   TOPIC, "opt",   "",          "run: the changelog topic (default <kafka.group.id>-sessions-changelog; created when missing, co-partitioned with the input)")
SR_CONFIG_KEY("state.changelog.replication.factor", INT, "-1..32767", "-1", "run: replication factor of a changelog topic created by streamrec (-1: the broker's default)")
SR_CONFIG_KEY("device",                  ENUM, "auto|cpu|cuda", "auto", "compute device: auto, cpu, cuda")
SR_CONFIG_KEY("device.threads",          INT,  "0..4096", "0",        "CPU backend threads (0: all cores)")
SR_CONFIG_KEY("retrieval.mode",          ENUM, "auto|exact|faiss", "auto", "auto (FAISS index when the bundle has one), exact, faiss")
SR_CONFIG_KEY("retrieval.nprobe",        INT,  "1..1048576", "16",    "FAISS IVF lists probed per query")
SR_CONFIG_KEY("retrieval.ef_search",     INT,  "1..1048576", "64",    "FAISS HNSW search depth")
SR_CONFIG_KEY("graph.ops",               LIST, "",       "",          "extra ops appended before sink, comma-separated names of graph.op.<name>.* declarations")
SR_CONFIG_KEY("processing.guarantee",    ENUM, "at_least_once|exactly_once", "at_least_once", "at_least_once or exactly_once (Kafka transactions)")
SR_CONFIG_KEY("commit.interval.ms",      INT,  "1..3600000", "100",   "run, exactly_once: a transaction commits at most this long after it began")
SR_CONFIG_KEY("instance.id",             TEXT, "",       "",          "run: this process's stable identity in the group (default: the host name); exactly_once uses transactional.id <kafka.group.id>-<instance.id>")
SR_CONFIG_KEY("metrics.listen",          HOSTPORT, "",   "127.0.0.1:9464", "Prometheus endpoint host:port (:port listens on every interface); empty turns it off")
SR_CONFIG_KEY("log.level",               ENUM, "debug|info|warn|error|off", "info", "debug, info, warn, error, off")
SR_CONFIG_KEY("runtime.max.inflight.events", INT, "1..2147483647", "16384", "run: events in flight (gathering, computing, awaiting acks) above which input is held back; taken again below half")
SR_CONFIG_KEY("runtime.max.producer.queue",  INT, "1..2147483647", "50000", "run: producer queue length (messages) above which input is held back; taken again below half")
SR_CONFIG_KEY("runtime.max.recoveries",      INT, "0..2147483647", "10",    "run: failed deliveries in a row (no commit between) recovered by reprocessing before the runtime stops")
