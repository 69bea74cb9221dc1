// XXH3-64 from Debian's libxxhash-dev header, compiled inline for the host CPU (AVX2/AVX-512), because the
// shared library is built for baseline SSE2 and runs at a third of the speed.
#pragma once
#include <stddef.h>
#include <stdint.h>

/// XXH3-64 of `len` bytes at `data`.
uint64_t oreo_xxh3_64(const void *data, size_t len);

/// Opaque streaming state.
typedef struct oreo_xxh3_state oreo_xxh3_state;
oreo_xxh3_state *oreo_xxh3_create(void);
void oreo_xxh3_reset(oreo_xxh3_state *state);
void oreo_xxh3_update(oreo_xxh3_state *state, const void *data, size_t len);
uint64_t oreo_xxh3_digest(const oreo_xxh3_state *state);
void oreo_xxh3_free(oreo_xxh3_state *state);
