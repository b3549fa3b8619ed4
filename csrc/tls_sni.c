/* tls_sni.c: the server name a TLS client asks for, read from its ClientHello without decrypting anything
 * (RFC 8446 section 4.1.2, RFC 6066 section 3; contract in docs/L7.md).  The twin is
 * pyswitch/refpath/http.py (tls_client_hello_sni).
 */
#include "http.h"

#define TLS_RECORD_HANDSHAKE 22
#define TLS_HANDSHAKE_CLIENT_HELLO 1
#define TLS_RECORD_HEADER 5             /* type, version (2), length (2) */
#define TLS_RECORD_MAX 16384            /* TLSPlaintext.length <= 2^14 */
#define TLS_EXT_SERVER_NAME 0
#define TLS_NAME_HOST 0

static uint32_t be16(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static int verdict(struct ps_tls_sni *sni, int v, int reason)
{
    sni->verdict = v;
    sni->reason = reason;
    return v;
}

/* The server_name extension's body data[p..end): sets the first host_name. */
static int read_server_name(const uint8_t *data, uint32_t p, uint32_t end, struct ps_tls_sni *sni)
{
    if (end - p < 2 || be16(data + p) != end - p - 2)
        return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_LENGTH);
    p += 2;
    while (p < end) {
        if (end - p < 3)
            return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_LENGTH);
        uint32_t type = data[p], len = be16(data + p + 1);
        p += 3;
        if (len > end - p)
            return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_LENGTH);
        if (type == TLS_NAME_HOST && sni->name_len == 0) {
            if (len == 0 || len > 255)
                return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_SERVER_NAME);
            for (uint32_t i = p; i < p + len; i++)
                if (data[i] < 0x21 || data[i] > 0x7e)
                    return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_SERVER_NAME);
            sni->name_ofs = p;
            sni->name_len = len;
        }
        p += len;
    }
    return PS_TLS_SNI;
}

int ps_tls_client_hello_sni(const uint8_t *data, uint32_t size, struct ps_tls_sni *sni)
{
    sni->hello_size = sni->name_ofs = sni->name_len = 0;
    /* Judge each byte of the record header as soon as it is there, so that a stream that is not TLS
     * is told apart from its first byte. */
    if (size >= 1 && data[0] != TLS_RECORD_HANDSHAKE)
        return verdict(sni, PS_TLS_NOT_TLS, PS_TLS_OK);
    if (size >= 2 && data[1] != 3)
        return verdict(sni, PS_TLS_NOT_TLS, PS_TLS_OK);
    if (size < TLS_RECORD_HEADER)
        return verdict(sni, PS_TLS_NEED_MORE, PS_TLS_OK);
    uint32_t record_len = be16(data + 3);
    if (record_len == 0 || record_len > TLS_RECORD_MAX)
        return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_RECORD_LEN);
    if (record_len < 4)                             /* not even a handshake header */
        return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_LENGTH);
    if (size >= 6 && data[5] != TLS_HANDSHAKE_CLIENT_HELLO)
        return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_NOT_CLIENT_HELLO);
    if (size >= 9 && ((uint32_t)data[6] << 16 | be16(data + 7)) + 4 > record_len)
        return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_FRAGMENTED);
    if (size < TLS_RECORD_HEADER + record_len)
        return verdict(sni, PS_TLS_NEED_MORE, PS_TLS_OK);

    uint32_t p = 9, end = 9 + ((uint32_t)data[6] << 16 | be16(data + 7));
    /* legacy_version (2) and random (32), then three vectors: session id, cipher suites, compression. */
    if (end - p < 35)
        return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_LENGTH);
    p += 34;
    uint32_t session_len = data[p];
    if (session_len > 32 || end - p - 1 < session_len + 2)
        return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_LENGTH);
    p += 1 + session_len;
    uint32_t suites_len = be16(data + p);
    if (suites_len < 2 || suites_len % 2 != 0 || end - p - 2 < suites_len + 1)
        return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_LENGTH);
    p += 2 + suites_len;
    uint32_t compression_len = data[p];
    if (compression_len < 1 || end - p - 1 < compression_len)
        return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_LENGTH);
    p += 1 + compression_len;
    sni->hello_size = TLS_RECORD_HEADER + record_len;
    if (p == end)                                   /* no extensions at all (TLS 1.0 clients) */
        return verdict(sni, PS_TLS_NO_SNI, PS_TLS_OK);
    if (end - p < 2 || be16(data + p) != end - p - 2)
        return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_LENGTH);
    p += 2;
    int seen_server_name = 0;
    while (p < end) {
        if (end - p < 4)
            return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_LENGTH);
        uint32_t type = be16(data + p), len = be16(data + p + 2);
        p += 4;
        if (len > end - p)
            return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_LENGTH);
        if (type == TLS_EXT_SERVER_NAME) {
            if (seen_server_name)                   /* RFC 8446 4.2: one extension of each type */
                return verdict(sni, PS_TLS_MALFORMED, PS_TLS_E_SERVER_NAME);
            seen_server_name = 1;
            if (read_server_name(data, p, p + len, sni) == PS_TLS_MALFORMED)
                return PS_TLS_MALFORMED;
        }
        p += len;
    }
    if (sni->name_len == 0)
        return verdict(sni, PS_TLS_NO_SNI, PS_TLS_OK);
    return verdict(sni, PS_TLS_SNI, PS_TLS_OK);
}
