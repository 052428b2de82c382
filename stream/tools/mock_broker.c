/* mock_broker.c — the embedded broker (sr_mock_broker.h): a producer handle that sends nothing
 * carries librdkafka's mock cluster; its log goes through sr_kafka_log_cb like every client's.
 * Owns the handle and the cluster. Thread: the caller's for start/stop. */
#include "sr_mock_broker.h"
#include "sr_stream.h"

#include <stdlib.h>

struct sr_mock_broker {
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    int brokers;
};

sr_err_t sr_mock_broker_start(int brokers, sr_mock_broker_t **out, struct sr_error *err)
{
    if (!out)
        return sr_error_set(err, SR_EINVAL, "embedded broker: NULL out");
    *out = NULL;
    if (brokers < 1 || brokers > 32)
        return sr_error_set(err, SR_EINVAL, "embedded broker: %d brokers (1..32)", brokers);
    sr_mock_broker_t *mb = calloc(1, sizeof *mb);
    if (!mb)
        return sr_error_set(err, SR_ENOMEM, "embedded broker: out of memory");
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, sr_kafka_log_cb);
    mb->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!mb->rk) {
        rd_kafka_conf_destroy(conf);
        free(mb);
        return sr_error_set(err, SR_EKAFKA, "embedded broker: creating the client handle: %s",
                            errstr);
    }
    mb->mc = rd_kafka_mock_cluster_new(mb->rk, brokers);
    if (!mb->mc) {
        rd_kafka_destroy(mb->rk);
        free(mb);
        return sr_error_set(err, SR_EKAFKA, "embedded broker: could not start librdkafka's mock "
                            "cluster (listeners on 127.0.0.1)");
    }
    mb->brokers = brokers;
    *out = mb;
    return SR_OK;
}

void sr_mock_broker_stop(sr_mock_broker_t *mb)
{
    if (!mb)
        return;
    rd_kafka_mock_cluster_destroy(mb->mc);
    rd_kafka_destroy(mb->rk);
    free(mb);
}

const char *sr_mock_broker_bootstraps(const sr_mock_broker_t *mb)
{
    return rd_kafka_mock_cluster_bootstraps(mb->mc);
}

int sr_mock_broker_count(const sr_mock_broker_t *mb) { return mb->brokers; }

sr_err_t sr_mock_broker_topic_create(sr_mock_broker_t *mb, const char *name, int partitions,
                                     int replication, struct sr_error *err)
{
    if (replication <= 0)
        replication = mb->brokers < 3 ? mb->brokers : 3;
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mb->mc, name, partitions, replication);
    if (e)
        return sr_error_set(err, SR_EKAFKA, "creating topic %s: %s", name, rd_kafka_err2str(e));
    return SR_OK;
}

rd_kafka_mock_cluster_t *sr_mock_broker_cluster(sr_mock_broker_t *mb) { return mb->mc; }
