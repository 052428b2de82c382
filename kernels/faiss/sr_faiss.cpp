/* sr_faiss.cpp — the C ABI of sr_faiss.h over FAISS's C++ API (static libfaiss.a).
 * Owns one faiss::Index per handle. Every entry point runs its C++ inside guard(), which turns
 * any exception (faiss::FaissException, std::bad_alloc, anything else) into an sr_err_t with
 * the message: nothing is ever thrown across the C boundary.
 * nprobe travels with each call (SearchParametersIVF on the index under an IndexIDMap, whose id
 * translation we do ourselves), so concurrent IVF searches never mutate the index. efSearch is
 * set on the HNSW index itself (FAISS 1.7.3 ignores SearchParametersHNSW), and indexes with
 * another wrapper (PreTransform, Refine) go through faiss::ParameterSpace, which also sets the
 * value in place: both under the handle's mutex, held for that search. */
#include "sr_faiss.h"

#include <faiss/AutoTune.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <cmath>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

struct sr_faiss {
    std::unique_ptr<faiss::Index> index;
    std::string desc;
    mutable std::mutex ps_mutex; /* ParameterSpace path only */
};

namespace {

/* FAISS's label type: faiss::Index::idx_t up to 1.7.3 (Debian bookworm), only faiss::idx_t from
 * 1.7.4 (trixie has 1.11). Both are int64_t and Index::ntotal has that type in every version,
 * so name it through ntotal rather than through either spelling or a version test. */
using idx_t = decltype(faiss::Index::ntotal);

template <class F>
sr_err_t guard(struct sr_error *err, const char *what, F &&f) noexcept
{
    try {
        return f();
    } catch (const std::bad_alloc &) {
        return sr_error_set(err, SR_ENOMEM, "faiss: %s: out of memory", what);
    } catch (const faiss::FaissException &e) {
        /* FAISS messages carry "Error in <function> at <file>:<line>: <msg>": keep the tail. */
        std::string m = e.what();
        size_t p = m.rfind(": ");
        std::string tail = p != std::string::npos && m.compare(0, 9, "Error in ") == 0
                               ? m.substr(p + 2) : m;
        return sr_error_set(err, SR_EFORMAT, "faiss: %s: %s", what, tail.c_str());
    } catch (const std::exception &e) {
        return sr_error_set(err, SR_EINTERNAL, "faiss: %s: %s", what, e.what());
    } catch (...) {
        return sr_error_set(err, SR_EINTERNAL, "faiss: %s: unknown C++ exception", what);
    }
}

/* "IDMap,HNSW32", "IVF1024,PQ16", ... from the index's types. */
std::string describe(const faiss::Index *ix)
{
    if (auto m = dynamic_cast<const faiss::IndexIDMap *>(ix))
        return "IDMap," + describe(m->index);
    if (auto h = dynamic_cast<const faiss::IndexHNSW *>(ix))
        return "HNSW" + std::to_string(h->hnsw.nb_neighbors(1)) +
               (dynamic_cast<const faiss::IndexHNSWFlat *>(ix) ? "" : ",other");
    if (auto pq = dynamic_cast<const faiss::IndexIVFPQ *>(ix))
        return "IVF" + std::to_string(pq->nlist) + ",PQ" + std::to_string(pq->pq.M);
    if (auto f = dynamic_cast<const faiss::IndexIVFFlat *>(ix))
        return "IVF" + std::to_string(f->nlist) + ",Flat";
    if (auto v = dynamic_cast<const faiss::IndexIVF *>(ix))
        return "IVF" + std::to_string(v->nlist) + ",other";
    if (dynamic_cast<const faiss::IndexFlat *>(ix))
        return "Flat";
    return typeid(*ix).name();
}

sr_faiss *wrap(faiss::Index *raw)
{
    sr_faiss *h = new sr_faiss;
    h->index.reset(raw);
    h->desc = describe(raw);
    return h;
}

} // namespace

extern "C" {

sr_err_t sr_faiss_new(const char *factory, int d, sr_faiss_t **out, struct sr_error *err)
{
    if (!out)
        return sr_error_set(err, SR_EINVAL, "faiss: NULL out");
    *out = nullptr;
    if (!factory || !*factory || d <= 0)
        return sr_error_set(err, SR_EINVAL, "faiss: need a factory string and d > 0");
    return guard(err, factory, [&]() -> sr_err_t {
        std::unique_ptr<faiss::Index> ix(
            faiss::index_factory(d, factory, faiss::METRIC_INNER_PRODUCT));
        /* add_with_ids: IVF supports it; HNSW and Flat need an IndexIDMap around them. */
        if (!dynamic_cast<faiss::IndexIVF *>(ix.get()) &&
            !dynamic_cast<faiss::IndexIDMap *>(ix.get())) {
            auto *m = new faiss::IndexIDMap(ix.get());
            m->own_fields = true;
            ix.release();
            ix.reset(m);
        }
        *out = wrap(ix.release());
        return SR_OK;
    });
}

void sr_faiss_destroy(sr_faiss_t *ix) { delete ix; }

bool sr_faiss_is_trained(const sr_faiss_t *ix) { return ix && ix->index->is_trained; }

sr_err_t sr_faiss_train(sr_faiss_t *ix, int64_t n, const float *x, struct sr_error *err)
{
    if (!ix || n < 0 || (n > 0 && !x))
        return sr_error_set(err, SR_EINVAL, "faiss train: bad argument");
    return guard(err, "train", [&]() -> sr_err_t {
        ix->index->train(n, x);
        return SR_OK;
    });
}

sr_err_t sr_faiss_add(sr_faiss_t *ix, int64_t n, const float *x, const int64_t *ids,
                      struct sr_error *err)
{
    if (!ix || n < 0 || (n > 0 && !x))
        return sr_error_set(err, SR_EINVAL, "faiss add: bad argument");
    if (!ix->index->is_trained)
        return sr_error_set(err, SR_EINVAL, "faiss add: index %s is not trained",
                            ix->desc.c_str());
    return guard(err, "add", [&]() -> sr_err_t {
        std::vector<idx_t> v((size_t)n);
        for (int64_t i = 0; i < n; i++)
            v[(size_t)i] = ids ? ids[i] : ix->index->ntotal + i;
        ix->index->add_with_ids(n, x, v.data());
        return SR_OK;
    });
}

sr_err_t sr_faiss_search(const sr_faiss_t *ix, int64_t n, const float *q, int k,
                         const struct sr_faiss_search_params *p, float *scores, int64_t *ids,
                         struct sr_error *err)
{
    if (!ix || n < 0 || k < 0 || (n > 0 && k > 0 && (!q || !scores || !ids)))
        return sr_error_set(err, SR_EINVAL, "faiss search: bad argument");
    if (n == 0 || k == 0)
        return SR_OK;
    return guard(err, "search", [&]() -> sr_err_t {
        const faiss::Index *top = ix->index.get();
        const faiss::IndexIDMap *map = dynamic_cast<const faiss::IndexIDMap *>(top);
        const faiss::Index *inner = map ? map->index : top;
        std::vector<idx_t> lab((size_t)n * (size_t)k);
        faiss::SearchParametersIVF pivf;
        const faiss::SearchParameters *sp = nullptr;
        bool want = p && (p->nprobe > 0 || p->ef_search > 0);
        std::unique_lock<std::mutex> lock(ix->ps_mutex, std::defer_lock);
        if (want) {
            if (auto v = dynamic_cast<const faiss::IndexIVF *>(inner)) {
                if (p->nprobe > 0) {
                    pivf.nprobe = (size_t)p->nprobe;
                    pivf.max_codes = 0;
                    sp = &pivf;
                }
                (void)v;
            } else if (auto h = dynamic_cast<const faiss::IndexHNSW *>(inner)) {
                /* FAISS 1.7.3 (Debian bookworm) ignores SearchParametersHNSW::efSearch (fixed
                 * in 1.7.4): set it on the index, under the mutex, for this search. */
                if (p->ef_search > 0) {
                    lock.lock();
                    const_cast<faiss::IndexHNSW *>(h)->hnsw.efSearch = p->ef_search;
                }
            } else {
                /* Another wrapper: ParameterSpace walks it and sets the value in place. */
                lock.lock();
                faiss::ParameterSpace ps;
                faiss::Index *mut = const_cast<faiss::Index *>(top);
                if (p->nprobe > 0)
                    try { ps.set_index_parameter(mut, "nprobe", p->nprobe); } catch (...) {}
                if (p->ef_search > 0)
                    try { ps.set_index_parameter(mut, "efSearch", p->ef_search); } catch (...) {}
                inner = top;
                map = nullptr;
            }
        }
        inner->search(n, q, k, scores, lab.data(), sp);
        for (size_t i = 0; i < lab.size(); i++) {
            idx_t l = lab[i];
            if (l < 0) {
                ids[i] = -1;
                scores[i] = -INFINITY;
            } else {
                ids[i] = map ? map->id_map.at((size_t)l) : l;
            }
        }
        return SR_OK;
    });
}

sr_err_t sr_faiss_write(const sr_faiss_t *ix, const char *path, struct sr_error *err)
{
    if (!ix || !path)
        return sr_error_set(err, SR_EINVAL, "faiss write: bad argument");
    std::string what = std::string("writing ") + path;
    return guard(err, what.c_str(), [&]() -> sr_err_t {
        faiss::write_index(ix->index.get(), path);
        return SR_OK;
    });
}

sr_err_t sr_faiss_read(const char *path, sr_faiss_t **out, struct sr_error *err)
{
    if (!out)
        return sr_error_set(err, SR_EINVAL, "faiss read: NULL out");
    *out = nullptr;
    if (!path)
        return sr_error_set(err, SR_EINVAL, "faiss read: NULL path");
    std::string what = std::string("reading ") + path;
    return guard(err, what.c_str(), [&]() -> sr_err_t {
        std::unique_ptr<faiss::Index> ix(faiss::read_index(path));
        if (!ix)
            return sr_error_set(err, SR_EFORMAT, "faiss: %s: no index", path);
        *out = wrap(ix.release());
        return SR_OK;
    });
}

int64_t sr_faiss_ntotal(const sr_faiss_t *ix) { return ix ? (int64_t)ix->index->ntotal : 0; }
int sr_faiss_d(const sr_faiss_t *ix) { return ix ? (int)ix->index->d : 0; }
bool sr_faiss_is_ip(const sr_faiss_t *ix)
{
    return ix && ix->index->metric_type == faiss::METRIC_INNER_PRODUCT;
}
const char *sr_faiss_describe(const sr_faiss_t *ix) { return ix ? ix->desc.c_str() : ""; }

sr_err_t sr_faiss_ids(const sr_faiss_t *ix, int64_t *ids, struct sr_error *err)
{
    if (!ix || (!ids && ix->index->ntotal > 0))
        return sr_error_set(err, SR_EINVAL, "faiss ids: bad argument");
    return guard(err, "listing ids", [&]() -> sr_err_t {
        const faiss::Index *top = ix->index.get();
        size_t n = (size_t)top->ntotal, j = 0;
        if (auto m = dynamic_cast<const faiss::IndexIDMap *>(top)) {
            if (m->id_map.size() != n)
                return sr_error_set(err, SR_EFORMAT, "faiss: IDMap holds %zu ids for %zu vectors",
                                    m->id_map.size(), n);
            for (auto id : m->id_map)
                ids[j++] = id;
        } else if (auto v = dynamic_cast<const faiss::IndexIVF *>(top)) {
            for (size_t l = 0; l < v->nlist; l++) {
                size_t ls = v->invlists->list_size(l);
                if (!ls)
                    continue;
                if (j + ls > n)
                    return sr_error_set(err, SR_EFORMAT, "faiss: inverted lists hold more ids "
                                        "than ntotal %zu", n);
                faiss::InvertedLists::ScopedIds sids(v->invlists, l);
                for (size_t i = 0; i < ls; i++)
                    ids[j++] = sids[i];
            }
            if (j != n)
                return sr_error_set(err, SR_EFORMAT, "faiss: inverted lists hold %zu ids, ntotal "
                                    "is %zu", j, n);
        } else {
            for (; j < n; j++)
                ids[j] = (int64_t)j;
        }
        return SR_OK;
    });
}

} /* extern "C" */
