/* cache.c — a bounded cache of committed sessions for the RocksDB backend, replaced by CLOCK
 * (one reference bit per entry, a hand sweeping the slot array): near-LRU hit rates without
 * list surgery on every hit. Entries hold decoded sessions (max_len items inline), so a hit
 * costs a hash probe and a copy. Only committed state lives here; pending batches live in the
 * store's overlay. Invariant: every entry sits in exactly one bucket chain and in slots[slot].
 * An evicted entry's memory is reused for the newcomer when its id fits, so a full cache in
 * steady state allocates only for unusually long ids. Owned by one thread (the store's). */
#include "state_int.h"

#include <stdlib.h>
#include <string.h>

sr_err_t sr__cache_init(struct sr__cache *c, size_t cap, uint32_t max_len)
{
    memset(c, 0, sizeof *c);
    c->cap = cap;
    c->max_len = max_len;
    if (!cap)
        return SR_OK;
    size_t nb = 16;
    while (nb < cap * 2)
        nb <<= 1;
    c->buckets = calloc(nb, sizeof *c->buckets);
    c->slots = calloc(cap, sizeof *c->slots);
    if (!c->buckets || !c->slots) {
        free(c->buckets);
        free(c->slots);
        memset(c, 0, sizeof *c);
        return SR_ENOMEM;
    }
    c->nbuckets = nb;
    return SR_OK;
}

void sr__cache_fini(struct sr__cache *c)
{
    for (size_t i = 0; i < c->count; i++) {
        free(c->slots[i]->aux);
        free(c->slots[i]);
    }
    free(c->buckets);
    free(c->slots);
    memset(c, 0, sizeof *c);
}

static struct sr__cache_ent **find_link(struct sr__cache *c, uint64_t hash, int32_t partition,
                                        const char *id, uint32_t len)
{
    struct sr__cache_ent **link = &c->buckets[hash & (c->nbuckets - 1)];
    for (; *link; link = &(*link)->next) {
        struct sr__cache_ent *e = *link;
        if (e->hash == hash && sr__state_key_eq(e->partition, e->id, e->idlen, partition, id, len))
            return link;
    }
    return link;
}

struct sr__cache_ent *sr__cache_get(struct sr__cache *c, uint64_t hash, int32_t partition,
                                    const char *id, uint32_t len)
{
    if (!c->cap)
        return NULL;
    struct sr__cache_ent *e = *find_link(c, hash, partition, id, len);
    if (e) {
        e->ref = 1;
        c->hits++;
    } else {
        c->misses++;
    }
    return e;
}

static void unlink_ent(struct sr__cache *c, struct sr__cache_ent *e)
{
    struct sr__cache_ent **link = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*link != e)
        link = &(*link)->next;
    *link = e->next;
    e->next = NULL;
}

/* Removes the entry in slot i: the last slot moves into its place. */
static void remove_slot(struct sr__cache *c, size_t i)
{
    struct sr__cache_ent *e = c->slots[i];
    unlink_ent(c, e);
    free(e->aux);
    free(e);
    c->count--;
    if (i != c->count) {
        c->slots[i] = c->slots[c->count];
        c->slots[i]->slot = (uint32_t)i;
    }
    c->slots[c->count] = NULL;
    if (c->hand >= c->count)
        c->hand = 0;
}

static struct sr__cache_ent *ent_alloc(uint32_t max_len, uint32_t idcap)
{
    size_t sz = sizeof(struct sr__cache_ent) + (size_t)max_len * 12 + idcap;
    struct sr__cache_ent *e = malloc(sz);
    if (!e)
        return NULL;
    e->items = (uint64_t *)(e + 1);
    e->types = (uint32_t *)(e->items + max_len);
    e->id = (char *)(e->types + max_len);
    e->idcap = idcap;
    e->aux = NULL;
    e->aux_len = e->aux_cap = 0;
    return e;
}

/* False when the encoder state does not fit in memory (the entry must not stay cached). */
static bool fill(struct sr__cache_ent *e, uint64_t hash, int32_t partition, const char *id,
                 uint32_t len, const struct sr_session *s, uint32_t max_len)
{
    if (!sr__aux_keep(&e->aux, &e->aux_cap, &e->aux_len, s->aux, s->aux_len))
        return false;
    e->hash = hash;
    e->partition = partition;
    e->idlen = len;
    if (len)
        memcpy(e->id, id, len);
    uint32_t m = s->len > max_len ? max_len : s->len;
    if (m) {
        memcpy(e->items, s->items + (s->len - m), (size_t)m * 8);
        sr__types_copy(e->types, s->types ? s->types + (s->len - m) : NULL, m);
    }
    e->len = m;
    e->last_ts = s->last_ts;
    e->ref = 0;
    return true;
}

void sr__cache_put(struct sr__cache *c, uint64_t hash, int32_t partition, const char *id,
                   uint32_t len, const struct sr_session *s)
{
    if (!c->cap)
        return;
    struct sr__cache_ent **link = find_link(c, hash, partition, id, len);
    if (*link) { /* replace in place: the key is the same, the id fits */
        struct sr__cache_ent *e = *link;
        if (!fill(e, hash, partition, id, len, s, c->max_len)) {
            remove_slot(c, e->slot); /* best effort: a later read goes to RocksDB */
            return;
        }
        e->ref = 1;
        return;
    }
    struct sr__cache_ent *e;
    size_t slot;
    if (c->count < c->cap) {
        e = ent_alloc(c->max_len, len < 32 ? 32 : len);
        if (!e)
            return;
        slot = c->count++;
    } else {
        /* CLOCK: clear reference bits until an unreferenced victim comes under the hand */
        while (c->slots[c->hand]->ref) {
            c->slots[c->hand]->ref = 0;
            c->hand = (c->hand + 1) % c->count;
        }
        slot = c->hand;
        c->hand = (c->hand + 1) % c->count;
        e = c->slots[slot];
        unlink_ent(c, e);
        if (e->idcap < len) {
            struct sr__cache_ent *n = ent_alloc(c->max_len, len);
            if (!n) { /* drop the victim; the slot array stays dense */
                c->slots[slot] = e; /* remove_slot expects it linked: relink first */
                e->next = c->buckets[e->hash & (c->nbuckets - 1)];
                c->buckets[e->hash & (c->nbuckets - 1)] = e;
                remove_slot(c, slot);
                return;
            }
            free(e->aux);
            free(e);
            e = n;
        }
    }
    if (!fill(e, hash, partition, id, len, s, c->max_len)) {
        /* out of memory for the encoder state: the slot must stay dense, so link the entry
         * with an empty session under its own key and remove it at once */
        e->hash = hash, e->partition = partition, e->idlen = 0;
        e->slot = (uint32_t)slot;
        c->slots[slot] = e;
        e->next = c->buckets[hash & (c->nbuckets - 1)];
        c->buckets[hash & (c->nbuckets - 1)] = e;
        remove_slot(c, slot);
        return;
    }
    e->slot = (uint32_t)slot;
    c->slots[slot] = e;
    struct sr__cache_ent **b = &c->buckets[hash & (c->nbuckets - 1)];
    e->next = *b;
    *b = e;
}

void sr__cache_remove(struct sr__cache *c, uint64_t hash, int32_t partition, const char *id,
                      uint32_t len)
{
    if (!c->cap)
        return;
    struct sr__cache_ent *e = *find_link(c, hash, partition, id, len);
    if (e)
        remove_slot(c, e->slot);
}

void sr__cache_evict_partition(struct sr__cache *c, int32_t partition)
{
    for (size_t i = 0; i < c->count;) {
        if (c->slots[i]->partition == partition)
            remove_slot(c, i); /* slot i now holds the former last entry: look again */
        else
            i++;
    }
}

void sr__cache_expire(struct sr__cache *c, int64_t cutoff)
{
    for (size_t i = 0; i < c->count;) {
        if (c->slots[i]->last_ts < cutoff)
            remove_slot(c, i);
        else
            i++;
    }
}
