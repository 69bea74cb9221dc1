#include <oneapi/dnnl/dnnl.h>

// libgomp (oneDNN's Debian build threads with OpenMP): oreo runs each primitive on one thread of its own pool.
void omp_set_num_threads(int);
int omp_get_max_threads(void);
