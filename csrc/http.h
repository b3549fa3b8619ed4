/* http.h: the first bytes of a client's stream, read as an HTTP/1.x request head or a TLS ClientHello.
 *
 * L7 switching reads them before it picks a backend (docs/L7.md is the contract).  Both parsers
 * only point into the caller's bytes (offsets and lengths), copy nothing and allocate nothing; the
 * Python twin is pyswitch/refpath/http.py.  The part between the cdef markers is handed to cffi by
 * csrc/build_ffi.py, like pyswitch.h's.
 */
#ifndef PS_HTTP_H
#define PS_HTTP_H 1

#include <stdint.h>

/* cdef begin */

#define PS_HTTP_HEAD_MAX 16384      /* default bound on a request head, request line to blank line */
#define PS_HTTP_MAX_HEADERS 64      /* header fields in one head; more is malformed */
#define PS_HTTP_ABSENT 4294967295   /* the offset of a span that is not there (no query, no Host) */

/* ps_http_parse_request verdicts (struct ps_http_request.verdict). */
#define PS_HTTP_NEED_MORE 0         /* no error so far, the blank line not yet received */
#define PS_HTTP_COMPLETE 1          /* a whole, well-formed head */
#define PS_HTTP_MALFORMED 2         /* refused: .reason says why; the switch answers 400 and resets */

/* Why a head is malformed (struct ps_http_request.reason); PS_HTTP_OK otherwise. */
#define PS_HTTP_OK 0
#define PS_HTTP_E_TOO_LARGE 1       /* no blank line within max_head bytes */
#define PS_HTTP_E_LINE_ENDING 2     /* a LF without its CR (a bare CR is a control byte, below) */
#define PS_HTTP_E_REQUEST_LINE 3    /* not "method SP target SP version" with single spaces */
#define PS_HTTP_E_METHOD 4          /* the method is not a token */
#define PS_HTTP_E_TARGET 5          /* not origin-form, absolute-form (http/https, no userinfo) or OPTIONS * */
#define PS_HTTP_E_VERSION 6         /* not HTTP/1.0 or HTTP/1.1 (HTTP/1.x, x a digit) */
#define PS_HTTP_E_HEADER_NAME 7     /* empty or not a token, no colon, or whitespace before the colon */
#define PS_HTTP_E_HEADER_VALUE 8    /* a control byte (NUL, CR, ...) in a value */
#define PS_HTTP_E_OBS_FOLD 9        /* a line that starts with SP or HTAB (obsolete line folding) */
#define PS_HTTP_E_TOO_MANY_HEADERS 10 /* more than PS_HTTP_MAX_HEADERS fields */
#define PS_HTTP_E_HOST 11           /* Host missing in HTTP/1.1, given twice, or not host[:port] */
#define PS_HTTP_E_CONTENT_LENGTH 12 /* Content-Length not digits, too large, or given twice */
#define PS_HTTP_E_TRANSFER_ENCODING 13 /* Transfer-Encoding not exactly "chunked", twice, or with Content-Length */
#define PS_HTTP_E_COUNT 14

/* One header field: its name and its value without the whitespace around it. */
struct ps_http_header {
    uint32_t name_ofs;              /* offset of the name in the parsed bytes */
    uint32_t name_len;              /* bytes of the name */
    uint32_t value_ofs;             /* offset of the value, leading OWS skipped */
    uint32_t value_len;             /* bytes of the value, trailing OWS cut */
};

/* What ps_http_parse_request found.  Offsets are into the bytes it was given. */
struct ps_http_request {
    int32_t verdict;                /* PS_HTTP_NEED_MORE, PS_HTTP_COMPLETE or PS_HTTP_MALFORMED */
    int32_t reason;                 /* PS_HTTP_E_* when malformed, else PS_HTTP_OK */
    uint32_t head_size;             /* complete: bytes up to and including the blank line */
    uint32_t method_ofs;            /* the method token */
    uint32_t method_len;
    uint32_t path_ofs;              /* the target's path ("/a/b", or "*"); empty for "http://h" */
    uint32_t path_len;
    uint32_t query_ofs;             /* after '?', or PS_HTTP_ABSENT when the target has no '?' */
    uint32_t query_len;
    uint32_t host_ofs;              /* an absolute-form target's authority, else Host's value, or ABSENT */
    uint32_t host_len;
    int32_t version_minor;          /* 0 or 1 (HTTP/1.x); any digit is accepted */
    int64_t content_length;         /* -1 when there is no Content-Length */
    int32_t chunked;                /* 1 when Transfer-Encoding: chunked */
    uint32_t n_headers;             /* entries of headers[] in use */
    struct ps_http_header headers[64]; /* PS_HTTP_MAX_HEADERS, in the order received */
};

/* Parses the request head at the start of data[0..size), reading at most max_head bytes of it (0 means
 * PS_HTTP_HEAD_MAX), into *req.  Returns req->verdict.  Leading empty lines (CRLF) are skipped, as
 * RFC 9112 section 2.2 allows.  Only complete lines are judged, in order, so a verdict on a prefix of a
 * stream never contradicts the verdict on the whole: a malformed line is reported as soon as its LF has
 * arrived, and NEED_MORE means every complete line so far was good. */
int ps_http_parse_request(const uint8_t *data, uint32_t size, uint32_t max_head, struct ps_http_request *req);

/* The index in req->headers of the first field at or after index `start` whose name equals
 * name[0..name_len) ignoring ASCII case, or -1. */
int ps_http_find_header(const uint8_t *data, const struct ps_http_request *req, const uint8_t *name,
                        uint32_t name_len, uint32_t start);

/* Looks for the cookie named name[0..name_len) (case-sensitive, RFC 6265) in every Cookie field of a
 * complete request, first match wins.  Returns 1 and sets *value_ofs, *value_len to its value (as sent,
 * quotes included) or returns 0. */
int ps_http_find_cookie(const uint8_t *data, const struct ps_http_request *req, const uint8_t *name,
                        uint32_t name_len, uint32_t *value_ofs, uint32_t *value_len);

/* ps_tls_client_hello_sni verdicts (struct ps_tls_sni.verdict). */
#define PS_TLS_NEED_MORE 0          /* a handshake record so far, not all of it received */
#define PS_TLS_SNI 1                /* a ClientHello with a server_name host_name: name_ofs, name_len */
#define PS_TLS_NO_SNI 2             /* a well-formed ClientHello without one */
#define PS_TLS_NOT_TLS 3            /* the first bytes are not a TLS handshake record */
#define PS_TLS_MALFORMED 4          /* a handshake record whose contents lie: .reason says where */

/* Why a ClientHello is malformed (struct ps_tls_sni.reason). */
#define PS_TLS_OK 0
#define PS_TLS_E_RECORD_LEN 1       /* record length 0 or above 2^14 */
#define PS_TLS_E_NOT_CLIENT_HELLO 2 /* the handshake message is not a ClientHello */
#define PS_TLS_E_FRAGMENTED 3       /* the ClientHello continues in a later record (not supported) */
#define PS_TLS_E_LENGTH 4           /* a length inside the ClientHello runs past its end */
#define PS_TLS_E_SERVER_NAME 5      /* server_name twice, empty, or a host_name that is not printable ASCII */
#define PS_TLS_E_COUNT 6

struct ps_tls_sni {
    int32_t verdict;                /* PS_TLS_* */
    int32_t reason;                 /* PS_TLS_E_* when malformed, else PS_TLS_OK */
    uint32_t hello_size;            /* SNI / NO_SNI: bytes of the record that holds the ClientHello */
    uint32_t name_ofs;              /* SNI: offset of the host_name in data */
    uint32_t name_len;              /* SNI: its bytes (1..255) */
};

/* Reads the TLS record at the start of data[0..size) and, when it is a whole ClientHello, the first
 * host_name of its server_name extension (RFC 6066 section 3) into *sni.  Returns sni->verdict. */
int ps_tls_client_hello_sni(const uint8_t *data, uint32_t size, struct ps_tls_sni *sni);

/* cdef end */

#endif
