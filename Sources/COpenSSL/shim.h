// OpenSSL 3 (libssl-dev): TLS over memory BIOs.
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <openssl/x509v3.h>
#include <openssl/rand.h>
#include <openssl/evp.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/rsa.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/core_names.h>
#include <openssl/sha.h>
#include <openssl/pem.h>

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

// EVP_PKEY_PUBLIC_KEY is a macro of macros, out of Swift's reach.
static inline int causeway_EVP_PKEY_PUBLIC_KEY(void) {
    return EVP_PKEY_PUBLIC_KEY;
}

// JWK public keys → EVP_PKEY. In C because OSSL_PARAM_BLD keeps its names, strings and
// buffers by reference until OSSL_PARAM_BLD_to_param: they must outlive every push.
static inline EVP_PKEY *causeway_public_key(const char *type, OSSL_PARAM_BLD *builder) {
    EVP_PKEY *key = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(builder);
    EVP_PKEY_CTX *context = params ? EVP_PKEY_CTX_new_from_name(NULL, type, NULL) : NULL;
    if (context && EVP_PKEY_fromdata_init(context) == 1) {
        if (EVP_PKEY_fromdata(context, &key, EVP_PKEY_PUBLIC_KEY, params) != 1) key = NULL;
    }
    EVP_PKEY_CTX_free(context);
    OSSL_PARAM_free(params);
    return key;
}

static inline EVP_PKEY *causeway_rsa_public_key(const unsigned char *n, size_t n_length, const unsigned char *e, size_t e_length) {
    BIGNUM *modulus = BN_bin2bn(n, (int)n_length, NULL);
    BIGNUM *exponent = BN_bin2bn(e, (int)e_length, NULL);
    OSSL_PARAM_BLD *builder = OSSL_PARAM_BLD_new();
    EVP_PKEY *key = NULL;
    if (modulus && exponent && builder && OSSL_PARAM_BLD_push_BN(builder, "n", modulus) == 1
        && OSSL_PARAM_BLD_push_BN(builder, "e", exponent) == 1) {
        key = causeway_public_key("RSA", builder);
    }
    OSSL_PARAM_BLD_free(builder);
    BN_free(modulus);
    BN_free(exponent);
    return key;
}

static inline EVP_PKEY *causeway_ec_public_key(const char *group, const unsigned char *point, size_t point_length) {
    OSSL_PARAM_BLD *builder = OSSL_PARAM_BLD_new();
    EVP_PKEY *key = NULL;
    if (builder && OSSL_PARAM_BLD_push_utf8_string(builder, "group", group, 0) == 1
        && OSSL_PARAM_BLD_push_octet_string(builder, "pub", point, point_length) == 1) {
        key = causeway_public_key("EC", builder);
    }
    OSSL_PARAM_BLD_free(builder);
    return key;
}
