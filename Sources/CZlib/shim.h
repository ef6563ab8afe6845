// zlib (zlib1g-dev): gzip encoding and decoding.
#include <zlib.h>
