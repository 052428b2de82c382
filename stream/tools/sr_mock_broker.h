/* sr_mock_broker.h — the one embedded Kafka-protocol broker: librdkafka's mock cluster, started
 * and stopped in one place for `streamrec broker`, `streamrec demo`, `bench e2e` and the
 * stream tests (DESIGN §9). The cluster lives on a producer handle that sends nothing; its
 * listeners bind 127.0.0.1 on ephemeral ports; data is in memory only (about 5 MiB kept per
 * partition). librdkafka 2.0's mock cannot create topics on request beyond its auto-creation
 * (4 partitions), so callers create theirs here first. Thread: start/stop on one thread; topic
 * creation and the fault-injection functions of rdkafka_mock.h are thread-safe. */
#ifndef SR_MOCK_BROKER_H
#define SR_MOCK_BROKER_H

#include "sr_core.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

typedef struct sr_mock_broker sr_mock_broker_t;

/* Starts a cluster of `brokers` brokers (1..32). The caller owns *out (sr_mock_broker_stop). */
sr_err_t sr_mock_broker_start(int brokers, sr_mock_broker_t **out, struct sr_error *err);
/* Stops the cluster; NULL is a no-op. */
void sr_mock_broker_stop(sr_mock_broker_t *mb);
/* "127.0.0.1:PORT[,...]", owned by mb. */
const char *sr_mock_broker_bootstraps(const sr_mock_broker_t *mb);
int sr_mock_broker_count(const sr_mock_broker_t *mb);
/* Creates a topic (waits for the mock's thread). replication 0: min(3, brokers). */
sr_err_t sr_mock_broker_topic_create(sr_mock_broker_t *mb, const char *name, int partitions,
                                     int replication, struct sr_error *err);
/* The cluster, for librdkafka's fault injection (rd_kafka_mock_broker_set_down, ...). */
rd_kafka_mock_cluster_t *sr_mock_broker_cluster(sr_mock_broker_t *mb);

#endif /* SR_MOCK_BROKER_H */
