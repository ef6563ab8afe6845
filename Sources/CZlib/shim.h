// zlib (zlib1g-dev): gzip encoding and decoding.
#include <zlib.h>

// deflateInit2/inflateInit2 are macros (they pass the header's version and struct size);
// these give them function form and nothing else.
static inline int causeway_deflateInit2(z_stream *strm, int level, int windowBits, int memLevel) {
    return deflateInit2(strm, level, Z_DEFLATED, windowBits, memLevel, Z_DEFAULT_STRATEGY);
}

static inline int causeway_inflateInit2(z_stream *strm, int windowBits) {
    return inflateInit2(strm, windowBits);
}
