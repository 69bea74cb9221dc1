// Software prefetch for the decoding kernels: Swift has no spelling for it, and a weight stream read once per
// token needs it (the L2 streamer restarts at every 4 KB page). Static inline, so Swift inlines the call.
#pragma once

/// Asks the CPU to start loading the cache line at `p` (for reading, into all cache levels).
static inline void oreo_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
