// nghttp2 (libnghttp2-dev): HTTP/2 framing, HPACK and flow control.
#include <nghttp2/nghttp2.h>
