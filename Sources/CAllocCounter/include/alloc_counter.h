// Counts heap allocations made by the calling thread while counting is on, by interposing malloc and friends
// (linked into the test and benchmark binaries only, never into oreo). Used to prove that a training step allocates nothing.
#pragma once
#include <stdint.h>

/// Starts counting this thread's allocations from zero.
void oreo_alloc_count_begin(void);
/// Stops counting; returns the number of allocation calls (malloc, calloc, realloc, aligned variants) since begin.
int64_t oreo_alloc_count_end(void);
/// Bytes requested by those calls.
int64_t oreo_alloc_count_bytes(void);
/// Starts counting the allocations of every thread (benchmarks: nothing else may run in the process).
void oreo_alloc_count_all_begin(void);
/// Stops the all-thread count and returns it.
int64_t oreo_alloc_count_all_end(void);
/// Suspends both counts (for example around logging) until resume.
void oreo_alloc_count_pause(void);
/// Resumes counts suspended by pause.
void oreo_alloc_count_resume(void);
