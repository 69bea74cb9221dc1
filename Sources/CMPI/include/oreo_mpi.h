#ifndef OREO_MPI_H
#define OREO_MPI_H
#include <stddef.h>
#include <stdint.h>

// MPI loaded at run time with dlopen, only when the process was started by an MPI launcher: plain `oreo` needs
// no MPI library. The two ABIs in use (Open MPI's pointer handles, MPICH's integer handles) are both spoken here,
// so no mpi.h is needed to build. Every function returns 0 on success, else an MPI error code (or -1 when the
// library is not loaded); oreo_mpi_error() describes the last failure.

/// Which launcher started this process: 1 Open MPI (OMPI_COMM_WORLD_SIZE), 2 MPICH / Hydra (PMI_SIZE), 0 none.
int oreo_mpi_launcher(void);
/// dlopens `path` (or the launcher's usual library when NULL) and resolves the functions oreo calls.
int oreo_mpi_load(const char *path);
/// MPI_Init_thread(MPI_THREAD_FUNNELED) and the world's rank and size.
int oreo_mpi_init(int *rank, int *size);
/// In-place sum over all ranks of `count` floats / doubles / int64s, in calls of at most `bucket` elements.
int oreo_mpi_allreduce_f32(float *buffer, int64_t count, int64_t bucket);
int oreo_mpi_allreduce_f64(double *buffer, int64_t count, int64_t bucket);
int oreo_mpi_allreduce_i64(int64_t *buffer, int64_t count, int64_t bucket);
/// In-place maximum over all ranks of `count` int64s.
int oreo_mpi_allreduce_max_i64(int64_t *buffer, int64_t count);
/// Every rank's `bytes` bytes, rank order, into `out` (size * bytes).
int oreo_mpi_allgather(const void *data, int bytes, void *out);
/// Rank `root` receives each rank's `bytes` bytes at `displacements[r]` of `out` (counts per rank in `counts`).
int oreo_mpi_gatherv(const void *data, int bytes, void *out, const int *counts, const int *displacements, int root);
/// `bytes` bytes of `buffer` from `root` to every rank.
int oreo_mpi_bcast(void *buffer, int64_t bytes, int root);
int oreo_mpi_barrier(void);
/// Ends every rank of the job with `code` (MPI_Abort on the world).
void oreo_mpi_abort(int code);
int oreo_mpi_finalize(void);
/// Whether MPI_Finalize was called.
int oreo_mpi_finalized(void);
/// The library's version string (MPI_Get_library_version), or the loader's last error.
const char *oreo_mpi_library_version(void);
const char *oreo_mpi_error(void);

#endif
