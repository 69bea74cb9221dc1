#include "oreo_mpi.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Handles are passed as the ABI's own type: a pointer in Open MPI, an int in MPICH (and its ABI family: Intel
// MPI, MVAPICH, Cray MPICH). The function pointer types are declared per ABI so every call is well typed.
typedef void *ompi_handle;
typedef int mpich_handle;

static void *lib;
static int abi;  // 1 Open MPI, 2 MPICH
static char error_text[512];
static char version_text[8192];
static int finalized;

// Open MPI: predefined objects are global symbols; MPICH: fixed integer constants of its ABI.
static ompi_handle o_comm_world, o_byte, o_float, o_double, o_int64, o_sum, o_max;
enum {
    M_COMM_WORLD = 0x44000000, M_BYTE = 0x4c00010d, M_FLOAT = 0x4c00040a, M_DOUBLE = 0x4c00080b,
    M_INT64 = 0x4c00083a, M_SUM = 0x58000003, M_MAX = 0x58000001
};

static int (*p_init_thread)(int *, char ***, int, int *);
static int (*p_finalize)(void);
static int (*p_get_library_version)(char *, int *);
static int (*o_comm_rank)(ompi_handle, int *);
static int (*o_comm_size)(ompi_handle, int *);
static int (*o_allreduce)(const void *, void *, int, ompi_handle, ompi_handle, ompi_handle);
static int (*o_allgather)(const void *, int, ompi_handle, void *, int, ompi_handle, ompi_handle);
static int (*o_gatherv)(const void *, int, ompi_handle, void *, const int *, const int *, ompi_handle, int, ompi_handle);
static int (*o_bcast)(void *, int, ompi_handle, int, ompi_handle);
static int (*o_barrier)(ompi_handle);
static int (*o_abort)(ompi_handle, int);
static int (*m_comm_rank)(mpich_handle, int *);
static int (*m_comm_size)(mpich_handle, int *);
static int (*m_allreduce)(const void *, void *, int, mpich_handle, mpich_handle, mpich_handle);
static int (*m_allgather)(const void *, int, mpich_handle, void *, int, mpich_handle, mpich_handle);
static int (*m_gatherv)(const void *, int, mpich_handle, void *, const int *, const int *, mpich_handle, int, mpich_handle);
static int (*m_bcast)(void *, int, mpich_handle, int, mpich_handle);
static int (*m_barrier)(mpich_handle);
static int (*m_abort)(mpich_handle, int);

int oreo_mpi_launcher(void) {
    if (getenv("OMPI_COMM_WORLD_SIZE")) return 1;
    if (getenv("PMI_SIZE") || getenv("PMI_RANK") || getenv("PMIX_RANK")) return 2;
    return 0;
}

const char *oreo_mpi_error(void) { return error_text; }

static void *sym(const char *name) {
    void *p = dlsym(lib, name);
    if (!p && !error_text[0]) snprintf(error_text, sizeof error_text, "MPI library has no symbol %s", name);
    return p;
}

int oreo_mpi_load(const char *path) {
    if (lib) return 0;
    error_text[0] = 0;
    const char *openmpi[] = {"libmpi.so.40", "libmpi.so", NULL};
    const char *mpich[] = {"libmpich.so.12", "libmpi.so.12", "libmpich.so", "libmpi.so", NULL};
    const char *one[] = {path, NULL};
    const char **names = path ? one : oreo_mpi_launcher() == 2 ? mpich : openmpi;
    // RTLD_GLOBAL: Open MPI's plugins resolve libmpi's symbols when they are loaded.
    for (int i = 0; names[i] && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        snprintf(error_text, sizeof error_text, "cannot load the MPI library (%s): %s", names[0], dlerror());
        return -1;
    }
    abi = dlsym(lib, "ompi_mpi_comm_world") ? 1 : 2;
    p_init_thread = (int (*)(int *, char ***, int, int *))sym("MPI_Init_thread");
    p_finalize = (int (*)(void))sym("MPI_Finalize");
    p_get_library_version = (int (*)(char *, int *))dlsym(lib, "MPI_Get_library_version");
    void *rank = sym("MPI_Comm_rank"), *size = sym("MPI_Comm_size"), *allreduce = sym("MPI_Allreduce");
    void *allgather = sym("MPI_Allgather"), *gatherv = sym("MPI_Gatherv"), *bcast = sym("MPI_Bcast");
    void *barrier = sym("MPI_Barrier"), *abort_ = sym("MPI_Abort");
    if (abi == 1) {
        o_comm_world = sym("ompi_mpi_comm_world");
        o_byte = sym("ompi_mpi_byte");
        o_float = sym("ompi_mpi_float");
        o_double = sym("ompi_mpi_double");
        o_int64 = sym("ompi_mpi_int64_t");
        o_sum = sym("ompi_mpi_op_sum");
        o_max = sym("ompi_mpi_op_max");
        o_comm_rank = (int (*)(ompi_handle, int *))rank;
        o_comm_size = (int (*)(ompi_handle, int *))size;
        o_allreduce = (int (*)(const void *, void *, int, ompi_handle, ompi_handle, ompi_handle))allreduce;
        o_allgather = (int (*)(const void *, int, ompi_handle, void *, int, ompi_handle, ompi_handle))allgather;
        o_gatherv = (int (*)(const void *, int, ompi_handle, void *, const int *, const int *, ompi_handle, int,
                             ompi_handle))gatherv;
        o_bcast = (int (*)(void *, int, ompi_handle, int, ompi_handle))bcast;
        o_barrier = (int (*)(ompi_handle))barrier;
        o_abort = (int (*)(ompi_handle, int))abort_;
    } else {
        m_comm_rank = (int (*)(mpich_handle, int *))rank;
        m_comm_size = (int (*)(mpich_handle, int *))size;
        m_allreduce = (int (*)(const void *, void *, int, mpich_handle, mpich_handle, mpich_handle))allreduce;
        m_allgather = (int (*)(const void *, int, mpich_handle, void *, int, mpich_handle, mpich_handle))allgather;
        m_gatherv = (int (*)(const void *, int, mpich_handle, void *, const int *, const int *, mpich_handle, int,
                             mpich_handle))gatherv;
        m_bcast = (int (*)(void *, int, mpich_handle, int, mpich_handle))bcast;
        m_barrier = (int (*)(mpich_handle))barrier;
        m_abort = (int (*)(mpich_handle, int))abort_;
    }
    if (error_text[0]) {
        dlclose(lib);
        lib = NULL;
        return -1;
    }
    return 0;
}

int oreo_mpi_init(int *rank, int *size) {
    if (!lib) return -1;
    int provided = 0;
    int rc = p_init_thread(NULL, NULL, 1 /* MPI_THREAD_FUNNELED, the same in both ABIs */, &provided);
    if (rc) return rc;
    rc = abi == 1 ? o_comm_rank(o_comm_world, rank) : m_comm_rank(M_COMM_WORLD, rank);
    if (rc) return rc;
    return abi == 1 ? o_comm_size(o_comm_world, size) : m_comm_size(M_COMM_WORLD, size);
}

// MPI counts are ints: a long buffer goes in several calls.
static int allreduce(void *buffer, int64_t count, int64_t bucket, size_t width, ompi_handle otype, int mtype,
                     ompi_handle oop, int mop) {
    if (!lib) return -1;
    if (bucket <= 0 || bucket > INT_MAX) bucket = INT_MAX;
    void *in_place = abi == 1 ? (void *)1 : (void *)-1;
    for (int64_t at = 0; at < count; at += bucket) {
        int n = (int)(count - at < bucket ? count - at : bucket);
        char *p = (char *)buffer + (size_t)at * width;
        int rc = abi == 1 ? o_allreduce(in_place, p, n, otype, oop, o_comm_world)
                          : m_allreduce(in_place, p, n, mtype, mop, M_COMM_WORLD);
        if (rc) return rc;
    }
    return 0;
}

int oreo_mpi_allreduce_f32(float *b, int64_t n, int64_t bucket) {
    return allreduce(b, n, bucket, 4, o_float, M_FLOAT, o_sum, M_SUM);
}
int oreo_mpi_allreduce_f64(double *b, int64_t n, int64_t bucket) {
    return allreduce(b, n, bucket, 8, o_double, M_DOUBLE, o_sum, M_SUM);
}
int oreo_mpi_allreduce_i64(int64_t *b, int64_t n, int64_t bucket) {
    return allreduce(b, n, bucket, 8, o_int64, M_INT64, o_sum, M_SUM);
}
int oreo_mpi_allreduce_max_i64(int64_t *b, int64_t n) {
    return allreduce(b, n, 0, 8, o_int64, M_INT64, o_max, M_MAX);
}

int oreo_mpi_allgather(const void *data, int bytes, void *out) {
    if (!lib) return -1;
    return abi == 1 ? o_allgather(data, bytes, o_byte, out, bytes, o_byte, o_comm_world)
                    : m_allgather(data, bytes, M_BYTE, out, bytes, M_BYTE, M_COMM_WORLD);
}

int oreo_mpi_gatherv(const void *data, int bytes, void *out, const int *counts, const int *displacements, int root) {
    if (!lib) return -1;
    return abi == 1 ? o_gatherv(data, bytes, o_byte, out, counts, displacements, o_byte, root, o_comm_world)
                    : m_gatherv(data, bytes, M_BYTE, out, counts, displacements, M_BYTE, root, M_COMM_WORLD);
}

int oreo_mpi_bcast(void *buffer, int64_t bytes, int root) {
    if (!lib) return -1;
    for (int64_t at = 0; at < bytes || (bytes == 0 && at == 0); at += INT_MAX) {
        int n = (int)(bytes - at < INT_MAX ? bytes - at : INT_MAX);
        int rc = abi == 1 ? o_bcast((char *)buffer + at, n, o_byte, root, o_comm_world)
                          : m_bcast((char *)buffer + at, n, M_BYTE, root, M_COMM_WORLD);
        if (rc) return rc;
        if (bytes == 0) break;
    }
    return 0;
}

int oreo_mpi_barrier(void) {
    if (!lib) return -1;
    return abi == 1 ? o_barrier(o_comm_world) : m_barrier(M_COMM_WORLD);
}

void oreo_mpi_abort(int code) {
    if (lib) {
        if (abi == 1) o_abort(o_comm_world, code);
        else m_abort(M_COMM_WORLD, code);
    }
    _Exit(code);
}

int oreo_mpi_finalize(void) {
    if (!lib || finalized) return 0;
    finalized = 1;
    return p_finalize();
}

int oreo_mpi_finalized(void) { return finalized; }

const char *oreo_mpi_library_version(void) {
    if (!lib || !p_get_library_version) return error_text;
    int n = 0;
    char buf[8192];
    if (p_get_library_version(buf, &n)) return error_text;
    buf[n < (int)sizeof buf ? n : (int)sizeof buf - 1] = 0;
    // the first line only (Open MPI's names the version, MPICH's continues with build options)
    char *nl = strchr(buf, '\n');
    if (nl) *nl = 0;
    snprintf(version_text, sizeof version_text, "%s", buf);
    return version_text;
}
