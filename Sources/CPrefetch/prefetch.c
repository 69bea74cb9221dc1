// The target is header-only (static inline functions); SwiftPM needs one source file.
#include "oreo_prefetch.h"
