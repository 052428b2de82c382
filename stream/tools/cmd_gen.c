/* cmd_gen.c — `streamrec gen`: synthetic events (sr_gen.h) or a public click log (--from-csv)
 * to a JSON Lines / Avro container file or to a Kafka topic (librdkafka producer, idempotent,
 * key = session_id, murmur2 partitioner like the Java client and kcat -p defaults), optionally
 * paced to --rate events/s. Writes the catalogue as items.tsv with --items-out (for a click
 * log: its distinct items in order of first appearance in the output). A click log is read
 * whole and preprocessed first (clicklog_prep.c): time order, support and length filters, and
 * with --split-days a training file (--output) and a test file (--test-output).
 * Owns the output handle and the producer; single-threaded (librdkafka runs its own threads). */
#include "cli.h"
#include "sr_stream.h"
#include "sr_gen.h"

#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage(FILE *f)
{
    fprintf(f,
            "usage: streamrec gen --sessions N --items M --events E --seed S\n"
            "                     (--output FILE | --topic T -b SERVERS) [options]\n"
            "       streamrec gen --from-csv FILE (--output FILE | --topic T -b SERVERS) [options]\n"
            "\n"
            "Synthetic sessions with learnable structure: a sparse Markov chain over a Zipf-popular\n"
            "catalogue (each item has a few likely successors), many sessions open at once,\n"
            "event types view/click/add_to_cart/purchase/wishlist, timestamps that never\n"
            "decrease. The same arguments give the same bytes.\n"
            "\n"
            "  --sessions N          sessions (default 1000)\n"
            "  --items M             catalogue size; item ids i0..i<M-1> (default 1000)\n"
            "  --events E            events in all, E >= N (default 10000)\n"
            "  --seed S              random seed (default 1)\n"
            "  --output FILE         JSON Lines, or an Avro container when FILE ends in .avro or\n"
            "                        with --format avro; '-' is stdout\n"
            "  --topic T             produce to topic T instead (key = session_id)\n"
            "  -b, --brokers LIST    bootstrap servers for --topic\n"
            "  -X key=value          a librdkafka producer property (repeatable)\n"
            "  --format F            json (default), avro (file: container; topic: bare Avro\n"
            "                        binary, schema streamrec.UserEvent) or avro-confluent (topic)\n"
            "  --schema-id ID        schema id in Confluent frames (default 1)\n"
            "  --rate EPS            at most EPS events per second (default: as fast as possible)\n"
            "  --items-out FILE      write the catalogue as items.tsv (index, item_id, category,\n"
            "                        available), item i<n> at index FIRST+n; with --from-csv,\n"
            "                        the log's distinct items in order of first appearance\n"
            "                        (category from YooChoose; Diginetica has none)\n"
            "  --first-index FIRST   first vocabulary index of --items-out (default 2)\n"
            "  --from-csv FILE       convert a YooChoose (session_id,timestamp,item_id,category;\n"
            "                        ISO-8601 time) or Diginetica (sessionId;userId;itemId;\n"
            "                        timeframe;eventdate) click log instead: every row becomes a\n"
            "                        `view`, written in time order (ties in file order), so each\n"
            "                        session's events are in time order; Diginetica's timeframe\n"
            "                        counts from the session's first eventdate (no day jump at\n"
            "                        midnight). The whole log is read into memory.\n"
            "click-log preprocessing (with --from-csv; the papers' GRU4Rec/NARM settings are\n"
            "--min-session-len 2 --min-item-support 5):\n"
            "  --min-session-len N   drop sessions of fewer than N events (default 1), before and\n"
            "                        after dropping rare items\n"
            "  --min-item-support N  drop items with fewer than N events (default 1)\n"
            "  --split-days N        sessions ending in the last N days of the log go to\n"
            "                        --test-output FILE, the others to --output (files only)\n"
            "  --keep-unseen         keep test events whose item is not in the training part\n"
            "                        (default: dropped, then too-short test sessions dropped)\n"
            "model options (defaults in parentheses):\n"
            "  --successors K (4)    --zipf S (1.0)        --restart P (0.1)\n"
            "  --categories C (sqrt(M)/2)                   --concurrency C (200 open sessions)\n"
            "  --gap-ms MS (20000 mean gap inside a session)\n"
            "  --start-ms T|now (1767225600000 = 2026-01-01T00:00:00Z; 'now' is not reproducible)\n"
            "  --session-prefix P (s)\n");
    return f == stdout ? 0 : 2;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* ---- the event source: generator or click log ------------------------------------------ */

struct source {
    sr_gen_t *gen;
    sr_clicklog_set_t *csv; /* the prepared click log */
    int part;               /* of csv: 0 training (or all), 1 test */
    int64_t next;
    const char *category;   /* of the click-log event last returned */
    size_t category_len;
    int64_t total; /* 0: unknown */
};

/* SR_OK with *ev, SR_ENOENT at the end. */
static sr_err_t source_next(struct source *s, struct sr_event *ev)
{
    if (s->gen)
        return sr_gen_next(s->gen, ev) ? SR_OK : SR_ENOENT;
    if (s->next >= sr_clicklog_set_count(s->csv, s->part))
        return SR_ENOENT;
    sr_clicklog_set_event(s->csv, s->part, s->next++, ev, &s->category, &s->category_len);
    return SR_OK;
}

/* ---- the catalogue of a click log (--items-out with --from-csv) -------------------------- */

/* Distinct item ids in order of first appearance, with the category of that first row.
 * Open addressing over sr_hash64; entries are malloc'd once per distinct item. */
struct catalog {
    char **id, **cat;
    size_t n, cap;
    int64_t *slot; /* index into id, or -1 */
    size_t nslot;
};

static void catalog_free(struct catalog *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->id[i]);
        free(c->cat[i]);
    }
    free(c->id);
    free(c->cat);
    free(c->slot);
}

static bool catalog_grow(struct catalog *c)
{
    size_t ns = c->nslot ? c->nslot * 2 : 1024;
    int64_t *slot = malloc(ns * sizeof *slot);
    if (!slot)
        return false;
    for (size_t i = 0; i < ns; i++)
        slot[i] = -1;
    for (size_t i = 0; i < c->n; i++) {
        size_t h = (size_t)sr_hash64_str(c->id[i]) & (ns - 1);
        while (slot[h] >= 0)
            h = (h + 1) & (ns - 1);
        slot[h] = (int64_t)i;
    }
    free(c->slot);
    c->slot = slot;
    c->nslot = ns;
    return true;
}

/* Adds the item when new; false when out of memory. */
static bool catalog_add(struct catalog *c, const char *id, size_t len, const char *cat,
                        size_t cat_len)
{
    if ((c->n + 1) * 2 > c->nslot && !catalog_grow(c))
        return false;
    size_t h = (size_t)sr_hash64(id, len) & (c->nslot - 1);
    for (; c->slot[h] >= 0; h = (h + 1) & (c->nslot - 1)) {
        const char *e = c->id[c->slot[h]];
        if (strlen(e) == len && !memcmp(e, id, len))
            return true;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        char **a = realloc(c->id, cap * sizeof *a);
        if (!a)
            return false;
        c->id = a;
        char **b = realloc(c->cat, cap * sizeof *b);
        if (!b)
            return false;
        c->cat = b;
        c->cap = cap;
    }
    c->id[c->n] = strndup(id, len);
    c->cat[c->n] = cat ? strndup(cat, cat_len) : NULL;
    if (!c->id[c->n] || (cat && !c->cat[c->n])) {
        free(c->id[c->n]);
        free(c->cat[c->n]);
        return false;
    }
    c->slot[h] = (int64_t)c->n++;
    return true;
}

/* items.tsv of a click log: index (first_index + order of first appearance), item_id,
 * category (YooChoose only), available (1). */
static int catalog_write(const struct catalog *c, const char *path, int64_t first_index,
                         bool with_category)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return sr__cli_fail("gen", "--items-out %s: %s", path, strerror(errno));
    fputs(with_category ? "index\titem_id\tcategory\tavailable\n" : "index\titem_id\tavailable\n",
          f);
    for (size_t i = 0; i < c->n; i++) {
        if (with_category)
            fprintf(f, "%" PRId64 "\t%s\t%s\t1\n", first_index + (int64_t)i, c->id[i],
                    c->cat[i] ? c->cat[i] : "");
        else
            fprintf(f, "%" PRId64 "\t%s\t1\n", first_index + (int64_t)i, c->id[i]);
    }
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad)
        return sr__cli_fail("gen", "--items-out %s: write failed", path);
    return 0;
}

/* ---- Kafka producer --------------------------------------------------------------------- */

struct producer {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    int64_t delivered, failed;
    char first_error[256];
};

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct producer *p = opaque;
    if (m->err) {
        if (p->failed++ == 0)
            snprintf(p->first_error, sizeof p->first_error, "%s", rd_kafka_err2str(m->err));
    } else {
        p->delivered++;
    }
}

static int producer_open(struct producer *p, const char *brokers, const char *topic,
                         const struct sr__cli_list *xprops)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {{"bootstrap.servers", brokers},
                           {"enable.idempotence", "true"},
                           {"linger.ms", "5"},
                           {"partitioner", "murmur2_random"},
                           {"message.timeout.ms", "60000"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            return sr__cli_fail("gen", "kafka %s: %s", kv[i][0], errstr);
        }
    for (int i = 0; i < xprops->n; i++) {
        const char *x = xprops->v[i], *eq = strchr(x, '=');
        char *key = eq && eq != x ? strndup(x, (size_t)(eq - x)) : NULL;
        if (!key) {
            rd_kafka_conf_destroy(conf);
            return sr__cli_fail("gen", "-X %s: expected key=value", x);
        }
        rd_kafka_conf_res_t r = rd_kafka_conf_set(conf, key, eq + 1, errstr, sizeof errstr);
        free(key);
        if (r != RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            return sr__cli_fail("gen", "-X %s: %s", x, errstr);
        }
    }
    rd_kafka_conf_set_log_cb(conf, sr_kafka_log_cb);
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!p->rk) {
        rd_kafka_conf_destroy(conf);
        return sr__cli_fail("gen", "creating the producer: %s", errstr);
    }
    p->rkt = rd_kafka_topic_new(p->rk, topic, NULL);
    if (!p->rkt)
        return sr__cli_fail("gen", "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
    return 0;
}

static int producer_send(struct producer *p, const struct sr_event *ev, const struct sr_buf *v)
{
    for (;;) {
        if (rd_kafka_produce(p->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, v->data, v->len,
                             ev->session_id, ev->session_id_len, NULL) == 0)
            break;
        rd_kafka_resp_err_t e = rd_kafka_last_error();
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return sr__cli_fail("gen", "produce: %s", rd_kafka_err2str(e));
        rd_kafka_poll(p->rk, 50);
    }
    rd_kafka_poll(p->rk, 0);
    if (p->failed)
        return sr__cli_fail("gen", "delivery failed: %s", p->first_error);
    return 0;
}

/* Flushes; returns non-zero when a message was not delivered. */
static int producer_close(struct producer *p, int64_t sent)
{
    int rc = 0;
    if (!p->rk)
        return 0;
    rd_kafka_resp_err_t e = rd_kafka_flush(p->rk, 120000);
    if (e)
        rc = sr__cli_fail("gen", "flush: %s (%d messages not delivered)", rd_kafka_err2str(e),
                          rd_kafka_outq_len(p->rk));
    else if (p->failed)
        rc = sr__cli_fail("gen", "%" PRId64 " messages failed: %s", p->failed, p->first_error);
    else if (p->delivered != sent)
        rc = sr__cli_fail("gen", "%" PRId64 " of %" PRId64 " messages delivered", p->delivered,
                          sent);
    if (p->rkt)
        rd_kafka_topic_destroy(p->rkt);
    rd_kafka_destroy(p->rk);
    p->rk = NULL;
    return rc;
}

/* ---- main ------------------------------------------------------------------------------- */

/* --start-ms: epoch milliseconds, or "now" (not reproducible). */
static bool parse_start_ms(const char *v, void *dst)
{
    if (!strcmp(v, "now")) {
        *(int64_t *)dst = sr_wall_ms();
        return true;
    }
    return sr__cli_parse_i64(v, 0, INT64_C(253402300799999), dst);
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

int sr__cmd_gen(int argc, char **argv)
{
    if (sr__cli_wants_help(argc, argv))
        return usage(stdout);
    struct sr_gen_params gp;
    sr_gen_params_default(&gp);
    const char *output = NULL, *topic = NULL, *brokers = NULL, *fmt_name = NULL, *csv = NULL,
               *items_out = NULL, *test_output = NULL;
    struct sr_clicklog_prep_params pp = {0};
    int64_t first_index = 2, schema_id = 1;
    double rate = 0;
    struct sr__cli_list xprops = {0};
    const struct sr__opt opts[] = {
        SR__I64("--sessions", &gp.n_sessions, 1, INT64_C(1000000000)),
        SR__I64("--items", &gp.n_items, 2, INT64_C(100000000)),
        SR__I64("--events", &gp.n_events, 1, INT64_MAX),
        SR__U64("--seed", &gp.seed),
        SR__INT("--successors", &gp.successors, 1, 64),
        SR__INT("--categories", &gp.n_categories, 1, INT32_MAX),
        SR__INT("--concurrency", &gp.concurrency, 1, INT32_MAX),
        SR__DOUBLE("--zipf", &gp.zipf_s, 0, 5),
        SR__DOUBLE("--restart", &gp.p_restart, 0, 1),
        SR__DOUBLE("--gap-ms", &gp.gap_mean_ms, 1, 3.6e6),
        SR__FN("--start-ms", &gp.start_ms, parse_start_ms, "epoch ms (0..253402300799999) or 'now'"),
        SR__STR("--session-prefix", &gp.session_prefix),
        SR__STR("--output|-o", &output),
        SR__STR("--topic|-t", &topic),
        SR__STR("--brokers|-b|--bootstrap-servers", &brokers),
        SR__LIST("-X", &xprops),
        SR__STR("--format", &fmt_name),
        SR__I64("--schema-id", &schema_id, 0, INT32_MAX),
        SR__DOUBLE("--rate", &rate, 0, 1e9),
        SR__STR("--items-out", &items_out),
        SR__I64("--first-index", &first_index, 0, 1000000),
        SR__STR("--from-csv", &csv),
        SR__I64("--min-session-len", &pp.min_session_len, 1, INT32_MAX),
        SR__I64("--min-item-support", &pp.min_item_support, 1, INT32_MAX),
        SR__I64("--split-days", &pp.split_days, 1, 100000),
        SR__STR("--test-output", &test_output),
        SR__FLAG("--keep-unseen", &pp.keep_unseen),
        SR__OPT_END,
    };
    if (sr__cli_parse("gen", opts, argc, argv, NULL, 0, NULL)) {
        sr__cli_list_free(&xprops);
        return 1;
    }
    int rc = 0;
    struct sr_error err = {0};
    struct source src = {0};
    struct producer prod = {0};
    sr_event_encoder_t *enc = NULL;
    sr_avro_file_writer_t *aw = NULL;
    FILE *out = NULL;
    struct sr_buf buf = {0};
    struct catalog cat = {0};
    int64_t n = 0;
    enum sr_clicklog_layout csv_layout = 0;
    int parts = 1;

    if (!!output + !!topic != 1) {
        rc = sr__cli_fail("gen", "give exactly one of --output FILE or --topic T");
        goto done;
    }
    if (topic && !brokers) {
        rc = sr__cli_fail("gen", "--topic needs -b SERVERS (bootstrap servers)");
        goto done;
    }
    enum sr_format fmt = SR_FORMAT_JSON;
    if (fmt_name && sr_format_parse(fmt_name, &fmt, &err) != SR_OK) {
        rc = sr__cli_fail("gen", "--format: %s", err.msg);
        goto done;
    }
    if (output && !fmt_name && ends_with(output, ".avro"))
        fmt = SR_FORMAT_AVRO;
    if (output && fmt == SR_FORMAT_AVRO_CONFLUENT) {
        rc = sr__cli_fail("gen", "--format avro-confluent is for topics; files are JSON Lines or "
                                 "Avro containers");
        goto done;
    }
    if (output && fmt == SR_FORMAT_AVRO && !strcmp(output, "-")) {
        rc = sr__cli_fail("gen", "an Avro container needs a file, not stdout");
        goto done;
    }
    if (!csv && (pp.min_session_len || pp.min_item_support || pp.split_days || pp.keep_unseen ||
                 test_output)) {
        rc = sr__cli_fail("gen", "--min-session-len, --min-item-support, --split-days, "
                                 "--test-output and --keep-unseen preprocess a click log: they "
                                 "need --from-csv");
        goto done;
    }
    if (!!pp.split_days != !!test_output || (pp.split_days && !output)) {
        rc = sr__cli_fail("gen", "--split-days N writes two files: give it with --output TRAIN "
                                 "and --test-output TEST");
        goto done;
    }

    if (csv) {
        sr_clicklog_t *cl = NULL;
        if (sr_clicklog_open(csv, &cl, &err) != SR_OK ||
            sr_clicklog_prepare(cl, &pp, &src.csv, &err) != SR_OK) {
            sr_clicklog_close(cl);
            rc = sr__cli_fail("gen", "%s", err.msg);
            goto done;
        }
        csv_layout = sr_clicklog_layout(cl);
        sr_clicklog_close(cl);
        const struct sr_clicklog_prep_stats *st = sr_clicklog_set_stats(src.csv);
        fprintf(stderr, "gen: %s: %" PRId64 " events, %" PRId64 " sessions, %" PRId64 " items read;"
                " dropped %" PRId64 " events in short sessions, %" PRId64 " of rare items, %" PRId64
                " of items unseen in training\n", csv, st->rows, st->sessions, st->items,
                st->dropped_short, st->dropped_rare, st->dropped_unseen);
        src.total = st->events[0];
    } else {
        if (sr_gen_new(&gp, &src.gen, &err) != SR_OK) {
            rc = sr__cli_fail("gen", "%s", err.msg);
            goto done;
        }
        src.total = gp.n_events;
        if (items_out &&
            sr_gen_write_items_tsv(src.gen, items_out, (int32_t)first_index, &err) != SR_OK) {
            rc = sr__cli_fail("gen", "--items-out %s", err.msg);
            goto done;
        }
    }

    parts = pp.split_days ? 2 : 1;
next_part:
    if (src.part == 1) { /* the test part of --split-days: the same writer to --test-output */
        output = test_output;
        src.next = 0;
        src.total = sr_clicklog_set_count(src.csv, 1);
        n = 0;
    }
    if (output && fmt == SR_FORMAT_AVRO) {
        if (sr_avro_file_writer_create(output, SR_AVRO_FILE_EVENTS, &aw, &err) != SR_OK) {
            rc = sr__cli_fail("gen", "%s", err.msg);
            goto done;
        }
    } else {
        if (sr_event_encoder_new(fmt, (int32_t)schema_id, &enc, &err) != SR_OK) {
            rc = sr__cli_fail("gen", "%s", err.msg);
            goto done;
        }
        if (output) {
            out = strcmp(output, "-") ? fopen(output, "w") : stdout;
            if (!out) {
                rc = sr__cli_fail("gen", "%s: %s", output, strerror(errno));
                goto done;
            }
        } else if ((rc = producer_open(&prod, brokers, topic, &xprops)) != 0) {
            goto done;
        }
    }

    bool tty = sr__cli_tty();
    uint64_t t0 = sr_now_ns(), last_progress = t0;
    for (;;) {
        struct sr_event ev;
        if (source_next(&src, &ev) == SR_ENOENT)
            break;
        if (src.csv && items_out) {
            if (!catalog_add(&cat, ev.item_id, ev.item_id_len, src.category, src.category_len)) {
                rc = sr__cli_fail("gen", "out of memory for the click log's catalogue");
                goto done;
            }
        }
        if (aw) {
            if (sr_avro_file_writer_append_event(aw, &ev, &err) != SR_OK) {
                rc = sr__cli_fail("gen", "%s: record %" PRId64 ": %s", output, n, err.msg);
                goto done;
            }
        } else {
            sr_buf_reset(&buf);
            if (sr_event_encode(enc, &ev, &buf, &err) != SR_OK) {
                rc = sr__cli_fail("gen", "record %" PRId64 ": %s", n, err.msg);
                goto done;
            }
            if (out) {
                if (fwrite(buf.data, 1, buf.len, out) != buf.len || fputc('\n', out) == EOF) {
                    rc = sr__cli_fail("gen", "writing %s: %s", output, strerror(errno));
                    goto done;
                }
            } else if ((rc = producer_send(&prod, &ev, &buf)) != 0) {
                goto done;
            }
        }
        n++;
        if (rate > 0) {
            uint64_t due = t0 + (uint64_t)((double)n * 1e9 / rate), now = sr_now_ns();
            if (due > now) {
                if (prod.rk)
                    rd_kafka_poll(prod.rk, 0);
                sleep_ns(due - now);
            }
        }
        if (tty && (n & 255) == 0) {
            uint64_t now = sr_now_ns();
            if (now - last_progress > 500000000u) {
                last_progress = now;
                double secs = (double)(now - t0) / 1e9;
                if (src.total)
                    fprintf(stderr, "\rgen: %" PRId64 "/%" PRId64 " events (%.0f ev/s)  ", n,
                            src.total, n / secs);
                else
                    fprintf(stderr, "\rgen: %" PRId64 " events (%.0f ev/s)  ", n, n / secs);
            }
        }
    }
    if (tty)
        fprintf(stderr, "\rgen: %" PRId64 " events in %.1f s%-20s\n", n,
                (double)(sr_now_ns() - t0) / 1e9, "");
    if (src.csv)
        fprintf(stderr, "gen: %s: %" PRId64 " events, %" PRId64 " sessions%s\n", output, n,
                sr_clicklog_set_stats(src.csv)->out_sessions[src.part],
                parts == 1 ? "" : src.part == 0 ? " (training)" : " (test)");
    if (src.part + 1 < parts) {
        bool avro_bad = aw && sr_avro_file_writer_close(aw, &err) != SR_OK;
        bool file_bad = out && (fflush(out) != 0 || ferror(out) || fclose(out) != 0);
        if (avro_bad || file_bad) {
            aw = NULL, out = NULL;
            rc = sr__cli_fail("gen", "writing %s: %s", output, avro_bad ? err.msg : strerror(errno));
            goto done;
        }
        aw = NULL;
        out = NULL;
        sr_event_encoder_destroy(enc);
        enc = NULL;
        src.part++;
        goto next_part;
    }
    if (src.csv && items_out &&
        (rc = catalog_write(&cat, items_out, first_index,
                            csv_layout == SR_CLICKLOG_YOOCHOOSE)) != 0)
        goto done;

done:
    if (aw && sr_avro_file_writer_close(aw, &err) != SR_OK && rc == 0)
        rc = sr__cli_fail("gen", "%s", err.msg);
    if (out) {
        bool bad = fflush(out) != 0 || ferror(out);
        if (out != stdout && fclose(out) != 0)
            bad = true;
        if (bad && rc == 0)
            rc = sr__cli_fail("gen", "writing %s: %s", output, strerror(errno));
    }
    if (prod.rk) {
        int prc = producer_close(&prod, rc == 0 ? n : prod.delivered + prod.failed);
        if (rc == 0)
            rc = prc;
    }
    sr_event_encoder_destroy(enc);
    sr_buf_free(&buf);
    sr_gen_destroy(src.gen);
    sr_clicklog_set_destroy(src.csv);
    catalog_free(&cat);
    sr__cli_list_free(&xprops);
    return rc;
}
