/* sr_stream.h — private to stream/: offline sources and sinks shared by replay, run and the
 * tools. A source yields records (raw bytes + position) in order; a sink is the file variant
 * of the graph's sr_sink. */
#ifndef SR_STREAM_H
#define SR_STREAM_H

#include "sr_core.h"
#include "sr_ops.h"
#include "sr_schemas.h"

/* ---- file source: JSON Lines or an Avro object container file (detected) -------------- */

typedef struct sr_file_source sr_file_source_t;

/* Opens path ("-" is stdin, JSON Lines only). The caller owns *out. */
sr_err_t sr_file_source_open(const char *path, sr_file_source_t **out, struct sr_error *err);
void sr_file_source_close(sr_file_source_t *s);
/* "json" or "avro": the codec the graph must decode the source's raw records with. */
const char *sr_file_source_format(const sr_file_source_t *s);
/* Writer schema for the raw records of an Avro source (our own schema), else NULL. */
const char *sr_file_source_writer_schema(const sr_file_source_t *s);
/* Base name of the file: source.topic of recommendations. */
const char *sr_file_source_name(const sr_file_source_t *s);
/* Fills a fresh batch with up to max records (raw, src_partition = 0, src_offset = record
 * number); b->n = 0 at the end. Raw bytes live in the arena. An Avro record that cannot be
 * read is counted in stats by reason and skipped (its record number is used up). */
sr_err_t sr_file_source_read(sr_file_source_t *s, int32_t max, sr_arena_t *arena,
                             struct sr_batch *b, struct sr_stats *stats, struct sr_error *err);
/* Bytes read so far and the file size (0 when unknown): progress. */
void sr_file_source_progress(const sr_file_source_t *s, uint64_t *done, uint64_t *total);

/* ---- file sink: .jsonl (JSON Lines) or .avro (container) by extension ------------------ */

typedef struct sr_file_sink sr_file_sink_t;

/* Creates (truncates) path; "-" is stdout (JSON Lines). The caller owns *out. */
sr_err_t sr_file_sink_open(const char *path, sr_file_sink_t **out, struct sr_error *err);
/* The sr_sink view used by the graph (valid while the sink lives). */
struct sr_sink *sr_file_sink_iface(sr_file_sink_t *s);
/* Flushes and closes; returns the first write error. NULL is a no-op. */
sr_err_t sr_file_sink_close(sr_file_sink_t *s, struct sr_error *err);

#endif /* SR_STREAM_H */
