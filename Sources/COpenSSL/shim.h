// OpenSSL 3 (libssl-dev): TLS over memory BIOs.
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <openssl/x509v3.h>
#include <openssl/rand.h>

// Several OpenSSL setters are macros over SSL_CTX_ctrl, which Swift cannot call; these
// inline wrappers give them function form and nothing else.
static inline long causeway_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version);
}

static inline long causeway_SSL_CTX_set_servername_callback(SSL_CTX *ctx, int (*callback)(SSL *, int *, void *),
                                                            void *arg) {
    SSL_CTX_set_tlsext_servername_callback(ctx, callback);
    return SSL_CTX_set_tlsext_servername_arg(ctx, arg);
}

static inline long causeway_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}

static inline long causeway_BIO_pending(BIO *bio) {
    return BIO_ctrl_pending(bio);
}

static inline uint64_t causeway_SSL_server_options(void) {
    return SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE;
}

static inline long causeway_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}

static inline uint64_t causeway_SSL_client_options(void) {
    return SSL_OP_NO_RENEGOTIATION;
}
