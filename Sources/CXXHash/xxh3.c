#define XXH_INLINE_ALL
#include <xxhash.h>
#include <stdlib.h>
#include "oreo_xxh3.h"

struct oreo_xxh3_state { XXH3_state_t s; };

uint64_t oreo_xxh3_64(const void *data, size_t len) { return XXH3_64bits(data, len); }

oreo_xxh3_state *oreo_xxh3_create(void) {
    oreo_xxh3_state *st = (oreo_xxh3_state *)aligned_alloc(64, (sizeof(oreo_xxh3_state) + 63) & ~(size_t)63);
    if (st) XXH3_64bits_reset(&st->s);
    return st;
}

void oreo_xxh3_reset(oreo_xxh3_state *state) { XXH3_64bits_reset(&state->s); }

void oreo_xxh3_update(oreo_xxh3_state *state, const void *data, size_t len) { XXH3_64bits_update(&state->s, data, len); }

uint64_t oreo_xxh3_digest(const oreo_xxh3_state *state) { return XXH3_64bits_digest(&state->s); }

void oreo_xxh3_free(oreo_xxh3_state *state) { free(state); }
