/* reload.c — the model bundle's hot reload (DESIGN §3.3, §10): SIGHUP, POST
 * /admin/reload or a new target of model.bundle (the watch below) loads the bundle again, and a
 * bundle that passes every start-up check replaces the running one between two batches.
 *
 * Threads. sr__rt_reload and the watch run on the loop; the load runs on libuv's threadpool
 * (uv_queue_work): sr_bundle_load (manifest, tensors, vocabulary, FAISS index), a whole new
 * graph on its own backend (sr_graph_new: every op's start-up check against the new bundle)
 * and a test encode (sr_graph_check). It shares nothing mutable with the worker, which keeps
 * running batches on the old graph meanwhile (the session store, statistics and outputs the
 * new graph borrows are only used from its first batch on). The new graph then travels to the
 * worker as a JOB_SWAP in the run queue: batches dispatched before it run on the old graph,
 * batches after it on the new one, none is split, nothing is dropped or run twice, and offsets
 * and state are untouched (state holds raw item ids, not indices, DESIGN §3). The worker
 * destroys the old graph (its bundle reference goes with it) and the completion tells the
 * loop, which updates what /metrics says is live.
 *
 * Owns: the reload record in flight (rt->reload: on the threadpool, then in the job queue),
 * the watch timer and its realpath request. One reload at a time; a trigger meanwhile runs
 * one more after it. A bundle that fails a check is refused with its first problem logged and
 * counted; the running one keeps serving. A reload never stops the stream. */
#include "runtime_int.h"

struct reload {
    struct job job;          /* JOB_SWAP, once the load succeeded */
    uv_work_t work;
    sr_runtime_t *rt;
    char trigger[32];
    bool notified;           /* RELOADING=1 sent: READY=1 is owed */
    uint64_t t0;
    /* threadpool, then read on the loop */
    sr_graph_t *g;           /* the new graph; after the swap, NULL (the worker destroyed the old) */
    sr_err_t rc;
    char errmsg[SR_ERROR_MSG_MAX];
    char version[256], dir[PATH_MAX];
    bool resolved;           /* dir is model.bundle's target (realpath succeeded) */
    char seen[SR_WATCH_MAX][PATH_MAX]; /* each watched path's target at the load ("" unknown) */
};

/* Threadpool: everything start-up checks, on a graph of its own. */
static void reload_work(uv_work_t *w)
{
    struct reload *r = w->data;
    sr_runtime_t *rt = r->rt;
    struct sr_error err = {0};
    sr_bundle_t *bundle = NULL;
    const char *path = sr_config_get(rt->cfg, "model.bundle");
    /* resolved once: a flip while it loads cannot mix two bundles' files */
    char *target = realpath(path, NULL);
    int e = errno;
    /* what the watch compares with from now on: the variants' targets as this load sees them */
    for (int i = 1; i < rt->watch_n; i++) {
        char *t = realpath(rt->watch_path[i], NULL);
        snprintf(r->seen[i], sizeof r->seen[i], "%s", t ? t : "");
        free(t);
    }
    snprintf(r->dir, sizeof r->dir, "%s", target ? target : path);
    r->resolved = target != NULL;
    sr_err_t rc = target ? sr_bundle_load(target, &bundle, &err)
                         : sr_error_set(&err, SR_ENOENT, "model.bundle %s: %s", path, strerror(e));
    free(target);
    struct sr_graph_params gp = {
        .cfg = rt->cfg, .runtime = "online", .stats = &rt->stats, .sink = &rt->outputs,
        .source_topic = rt->input_topic, .state = rt->state, .bundle = bundle,
    };
    if (rc == SR_OK)
        rc = sr_graph_new(&gp, &r->g, &err);
    if (rc == SR_OK)
        rc = sr_graph_check(r->g, &err);
    if (rc == SR_OK) {
        snprintf(r->version, sizeof r->version, "%s", sr_graph_model_version(r->g));
    } else {
        sr_graph_destroy(r->g);
        r->g = NULL;
        snprintf(r->errmsg, sizeof r->errmsg, "%s", err.msg);
    }
    sr_bundle_unref(bundle);
    r->rc = rc;
}

static void reload_end(sr_runtime_t *rt, struct reload *r)
{
    if (r->notified && !rt->draining && !rt->fatal)
        sr_notify_ready(NULL);
    sr_graph_destroy(r->g);
    free(r);
    rt->reload = NULL;
    if (rt->reload_again && !rt->draining && !rt->fatal) {
        rt->reload_again = false;
        sr__rt_reload(rt, rt->reload_again_why);
    }
}

/* Loop: the load finished (or was cancelled by the shutdown). */
static void reload_after(uv_work_t *w, int status)
{
    struct reload *r = w->data;
    sr_runtime_t *rt = r->rt;
    if (status != 0 || rt->draining || rt->fatal || rt->finishing) {
        sr_log(SR_LOG_INFO, CMP, "model reload dropped: the runtime is stopping", "trigger=%s",
               r->trigger);
        reload_end(rt, r);
        return;
    }
    if (r->resolved) /* the watch need not load this target again */
        snprintf(rt->watch_seen[0], sizeof rt->watch_seen[0], "%s", r->dir);
    for (int i = 1; i < rt->watch_n; i++)
        if (r->seen[i][0])
            snprintf(rt->watch_seen[i], sizeof rt->watch_seen[i], "%s", r->seen[i]);
    if (r->rc != SR_OK) {
        rt->reloads_refused++;
        sr_log(SR_LOG_ERROR, CMP, "model reload refused: the running bundle keeps serving",
               "trigger=%s bundle=%s model_version=%s live=%s error=\"%s\"", r->trigger, r->dir,
               rt->model_version, rt->model_dir, r->errmsg);
        reload_end(rt, r);
        return;
    }
    r->job.type = JOB_SWAP;
    r->job.rl = r;
    sr__rt_job_push(rt, &r->job);
}

void sr__rt_reload_swapped(sr_runtime_t *rt, struct reload *r)
{
    rt->reloads_ok++;
    sr_log(SR_LOG_INFO, CMP, "model reloaded: batches from here on run the new bundle",
           "trigger=%s model_version=%s previous=%s bundle=%s load_ms=%llu", r->trigger,
           r->version, rt->model_version, r->dir,
           (unsigned long long)((sr_now_ns() - r->t0) / 1000000ULL));
    snprintf(rt->model_version, sizeof rt->model_version, "%s", r->version);
    snprintf(rt->model_dir, sizeof rt->model_dir, "%s", r->dir);
    reload_end(rt, r);
}

void sr__rt_reload(sr_runtime_t *rt, const char *trigger)
{
    if (rt->draining || rt->fatal) {
        sr_log(SR_LOG_INFO, CMP, "model reload ignored: the runtime is stopping", "trigger=%s",
               trigger);
        return;
    }
    if (rt->reload) {
        rt->reload_again = true;
        snprintf(rt->reload_again_why, sizeof rt->reload_again_why, "%s", trigger);
        return;
    }
    struct reload *r = calloc(1, sizeof *r);
    if (!r) {
        rt->reloads_refused++;
        sr_log(SR_LOG_ERROR, CMP, "model reload refused: out of memory", "trigger=%s", trigger);
        return;
    }
    r->rt = rt;
    r->work.data = r;
    r->t0 = sr_now_ns();
    snprintf(r->trigger, sizeof r->trigger, "%s", trigger);
    /* systemd (Type=notify-reload or ExecReload): RELOADING=1 now, READY=1 once it is done;
     * before the first READY=1 the reload is silent (readiness is the group join's). */
    r->notified = rt->notified_ready && sr_notify_reloading() == 1;
    int e = uv_queue_work(&rt->loop, &r->work, reload_work, reload_after);
    if (e != 0) {
        rt->reloads_refused++;
        sr_log(SR_LOG_ERROR, CMP, "model reload refused: cannot start the load", "trigger=%s "
               "error=\"%s\"", trigger, uv_strerror(e));
        if (r->notified)
            sr_notify_ready(NULL);
        free(r);
        return;
    }
    rt->reload = r;
    sr_log(SR_LOG_INFO, CMP, "model reload: loading and checking the bundle off the hot path",
           "trigger=%s bundle=%s", trigger, sr_config_get(rt->cfg, "model.bundle"));
}

/* ---- the watch ------------------------------------------------------------------------------
 * model.bundle is resolved again every model.watch.interval.ms (uv_fs_realpath, on the
 * threadpool: a slow filesystem never holds the loop); a target other than the one last seen
 * reloads. Polling rather than uv_fs_event (inotify): a flip replaces the symlink itself (ln -s
 * + rename), which a watch on the link or on its target never reports; a watch on the parent
 * directory would, but not a flip one level up (Kubernetes volumes: a ..data symlink that the
 * file links go through), not on network filesystems, and it fires on every file written while
 * a new bundle is copied beside it. realpath follows every level. A target that is not a bundle
 * yet (a flip to a half-copied directory) is refused once and not retried until the target
 * changes again or SIGHUP asks. */
static void watch_next(sr_runtime_t *rt);

/* One path resolved: a target other than the one last seen marks the tick; after the last path
 * a marked tick reloads (once, whichever bundles moved: a reload rebuilds every variant). */
static void on_realpath(uv_fs_t *req)
{
    sr_runtime_t *rt = req->data;
    int i = rt->watch_i;
    if (req->result == 0 && req->ptr && strcmp(req->ptr, rt->watch_seen[i]) != 0) {
        sr_log(SR_LOG_INFO, CMP, "a watched bundle path points elsewhere now", "path=%s target=%s "
               "previous=%s", rt->watch_path[i], (const char *)req->ptr, rt->watch_seen[i]);
        snprintf(rt->watch_seen[i], sizeof rt->watch_seen[i], "%s", (const char *)req->ptr);
        rt->watch_changed = true;
    }
    /* not resolvable now (a flip in progress, or removed): the next tick looks again */
    uv_fs_req_cleanup(req);
    rt->watch_i++;
    watch_next(rt);
}

static void watch_next(sr_runtime_t *rt)
{
    if (rt->watch_i < rt->watch_n && !rt->draining && !rt->fatal) {
        rt->watch_req.data = rt;
        if (uv_fs_realpath(&rt->loop, &rt->watch_req, rt->watch_path[rt->watch_i],
                           on_realpath) == 0)
            return;
    }
    rt->watch_busy = false;
    if (rt->watch_changed && !rt->draining && !rt->fatal) {
        rt->watch_changed = false;
        sr__rt_reload(rt, "symlink");
    }
}

static void on_watch(uv_timer_t *t)
{
    sr_runtime_t *rt = t->data;
    if (rt->watch_busy || rt->draining || rt->fatal)
        return;
    rt->watch_busy = true;
    rt->watch_i = 0;
    rt->watch_changed = false;
    watch_next(rt);
}

/* The watched paths: model.bundle, and each A/B variant's own bundle key (a variant without
 * one runs model.bundle's bundle). Their targets now are what the running graph loaded. */
sr_err_t sr__rt_watch_start(sr_runtime_t *rt, struct sr_error *err)
{
    int64_t ms = 0;
    sr_err_t rc = sr_config_get_int(rt->cfg, "model.watch.interval.ms", &ms, err);
    if (rc != SR_OK || ms <= 0)
        return rc;
    rt->watch_path[0] = sr_config_get(rt->cfg, "model.bundle");
    rt->watch_n = 1;
    int nv = 0;
    const struct sr_variant *vs = rt->g ? sr_graph_variants(rt->g, &nv) : NULL;
    for (int v = 0; v < nv && rt->watch_n < SR_WATCH_MAX; v++) {
        char key[200];
        snprintf(key, sizeof key, "model.variant.%s.bundle", vs[v].name);
        const char *path = sr_config_get(rt->cfg, key);
        if (!path || !*path)
            continue;
        rt->watch_path[rt->watch_n] = path;
        snprintf(rt->watch_seen[rt->watch_n], sizeof rt->watch_seen[0], "%s",
                 sr_bundle_info(vs[v].bundle)->dir);
        rt->watch_n++;
    }
    uv_timer_init(&rt->loop, &rt->watch_timer);
    rt->watch_timer.data = rt;
    uv_timer_start(&rt->watch_timer, on_watch, (uint64_t)ms, (uint64_t)ms);
    return SR_OK;
}

/* Any thread, after the loop and the worker ended: a reload record a job list still holds. */
void sr__rt_reload_free(struct reload *r)
{
    if (!r)
        return;
    sr_graph_destroy(r->g);
    free(r);
}

/* Worker: the swap, between two batches. Under mmu: /metrics reads the graph's A/B variants
 * from the loop under it, so the old graph is destroyed only once no reader can hold it. */
void sr__rt_reload_swap(sr_runtime_t *rt, struct reload *r)
{
    pthread_mutex_lock(&rt->mmu);
    sr_graph_t *old = rt->g;
    rt->g = r->g;
    r->g = NULL;
    pthread_mutex_unlock(&rt->mmu);
    sr_graph_destroy(old);
}
