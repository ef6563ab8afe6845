// brotli (libbrotli-dev): br encoding and decoding.
#include <brotli/encode.h>
#include <brotli/decode.h>
