// OpenSSL 3 (libssl-dev): TLS over memory BIOs.
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
