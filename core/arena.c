/* arena.c — bump allocator for per-batch scratch (nginx pools, ggml contexts). Memory comes in
 * chunks that are kept across resets, so a batch loop in steady state calls malloc never.
 * An allocation larger than the chunk size gets a chunk of its own. Not thread-safe. */
#include "sr_core.h"

#include <stdlib.h>
#include <string.h>

struct sr_arena_chunk {
    struct sr_arena_chunk *next;
    size_t size;
    size_t used;
    unsigned char data[]; /* alignment is computed on addresses, not offsets */
};

struct sr_arena {
    struct sr_arena_chunk *head;  /* chunk being filled */
    struct sr_arena_chunk *spare; /* chunks freed by reset, reused first */
    size_t chunk_size;
    size_t used;
};

sr_arena_t *sr_arena_new(size_t chunk_size)
{
    sr_arena_t *a = calloc(1, sizeof *a);
    if (a)
        a->chunk_size = chunk_size ? chunk_size : 1 << 20;
    return a;
}

static void free_list(struct sr_arena_chunk *c)
{
    while (c) {
        struct sr_arena_chunk *n = c->next;
        free(c);
        c = n;
    }
}

void sr_arena_destroy(sr_arena_t *a)
{
    if (!a)
        return;
    free_list(a->head);
    free_list(a->spare);
    free(a);
}

static struct sr_arena_chunk *take_chunk(sr_arena_t *a, size_t need)
{
    struct sr_arena_chunk **pp = &a->spare;
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->size >= need) {
            struct sr_arena_chunk *c = *pp;
            *pp = c->next;
            c->used = 0;
            return c;
        }
    }
    size_t size = need > a->chunk_size ? need : a->chunk_size;
    struct sr_arena_chunk *c = malloc(sizeof *c + size);
    if (!c)
        return NULL;
    c->size = size;
    c->used = 0;
    return c;
}

void *sr_arena_alloc(sr_arena_t *a, size_t size, size_t align)
{
    if (!a || align == 0 || (align & (align - 1)) || align > 4096)
        return NULL;
    if (size == 0)
        size = 1;
    struct sr_arena_chunk *c = a->head;
    if (c) {
        uintptr_t base = (uintptr_t)c->data;
        size_t off = (size_t)(((base + c->used + align - 1) & ~(uintptr_t)(align - 1)) - base);
        if (off <= c->size && size <= c->size - off) {
            c->used = off + size;
            a->used += size;
            return c->data + off;
        }
    }
    if (size > SIZE_MAX - align)
        return NULL;
    c = take_chunk(a, size + align);
    if (!c)
        return NULL;
    c->next = a->head;
    a->head = c;
    uintptr_t p = (uintptr_t)c->data;
    size_t off = (size_t)(((p + align - 1) & ~(uintptr_t)(align - 1)) - p);
    c->used = off + size;
    a->used += size;
    return c->data + off;
}

void *sr_arena_calloc(sr_arena_t *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = sr_arena_alloc(a, n * size, 16);
    if (p)
        memset(p, 0, n * size);
    return p;
}

char *sr_arena_strndup(sr_arena_t *a, const char *s, size_t n)
{
    char *p = sr_arena_alloc(a, n + 1, 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

void sr_arena_reset(sr_arena_t *a)
{
    if (!a)
        return;
    struct sr_arena_chunk *c = a->head;
    while (c) {
        struct sr_arena_chunk *n = c->next;
        c->next = a->spare;
        a->spare = c;
        c = n;
    }
    a->head = NULL;
    a->used = 0;
}

size_t sr_arena_used(const sr_arena_t *a) { return a ? a->used : 0; }
