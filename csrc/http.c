/* http.c: an HTTP/1.x request head, parsed in place (RFC 9112; contract in docs/L7.md).
 *
 * Strict where a lenient reading lets a request mean one thing to the switch and another to the backend
 * (request smuggling): single spaces in the request line, CRLF only, no obsolete folding, no control
 * bytes, one Host, one body length.  Lenient where real clients differ: names in any case, optional
 * whitespace around values, leading empty lines.  The twin is pyswitch/refpath/http.py.
 */
#include <stddef.h>
#include <string.h>

#include "http.h"

/* RFC 9110 section 5.6.2: tchar. */
static int is_tchar(uint8_t c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A Host value: uri-host [":" port] (RFC 3986 reg-name, IP-literal, IPv4), by its characters only. */
static int is_host_char(uint8_t c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != 0 && strchr("-._~!$&'()*+,;=%:[]", c) != NULL;
}

static uint8_t lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

/* Whether data[ofs..ofs+len) equals the lower-case ASCII `word` ignoring case. */
static int equals_nocase(const uint8_t *data, uint32_t ofs, uint32_t len, const char *word)
{
    uint32_t n = (uint32_t)strlen(word);
    if (len != n)
        return 0;
    for (uint32_t i = 0; i < n; i++)
        if (lower(data[ofs + i]) != (uint8_t)word[i])
            return 0;
    return 1;
}

static int malformed(struct ps_http_request *req, int reason)
{
    req->verdict = PS_HTTP_MALFORMED;
    req->reason = reason;
    return req->verdict;
}

/* The request target at data[ofs..ofs+len): sets path, query and (absolute-form) host. */
static int parse_target(const uint8_t *data, uint32_t ofs, uint32_t len, const uint8_t *method,
                        uint32_t method_len, struct ps_http_request *req)
{
    uint32_t end = ofs + len, p = ofs;
    for (uint32_t i = ofs; i < end; i++)
        if (data[i] < 0x21 || data[i] > 0x7e || data[i] == '#')
            return 0;
    if (len == 1 && data[ofs] == '*') {
        if (method_len != 7 || memcmp(method, "OPTIONS", 7) != 0)
            return 0;
        req->path_ofs = ofs;
        req->path_len = 1;
        return 1;
    }
    if (data[ofs] != '/') {
        uint32_t scheme = 0;
        if (len >= 7 && equals_nocase(data, ofs, 7, "http://"))
            scheme = 7;
        else if (len >= 8 && equals_nocase(data, ofs, 8, "https://"))
            scheme = 8;
        if (scheme == 0)
            return 0;
        uint32_t host = ofs + scheme;
        p = host;
        while (p < end && data[p] != '/' && data[p] != '?')
            p++;
        if (p == host)
            return 0;
        for (uint32_t i = host; i < p; i++)
            if (!is_host_char(data[i]))     /* '@' (userinfo) among them: RFC 9110 4.2.4 deprecates it */
                return 0;
        req->host_ofs = host;
        req->host_len = p - host;
    }
    uint32_t path = p;
    while (p < end && data[p] != '?')
        p++;
    req->path_ofs = path;
    req->path_len = p - path;
    if (p < end) {
        req->query_ofs = p + 1;
        req->query_len = end - p - 1;
    }
    return 1;
}

/* The request line data[ofs..ofs+len), CRLF excluded. */
static int parse_request_line(const uint8_t *data, uint32_t ofs, uint32_t len, struct ps_http_request *req)
{
    uint32_t end = ofs + len;
    const uint8_t *sp1 = memchr(data + ofs, ' ', len);
    if (sp1 == NULL)
        return malformed(req, PS_HTTP_E_REQUEST_LINE);
    uint32_t m_end = (uint32_t)(sp1 - data);
    const uint8_t *sp2 = memchr(data + m_end + 1, ' ', end - m_end - 1);
    if (sp2 == NULL)
        return malformed(req, PS_HTTP_E_REQUEST_LINE);
    uint32_t t_end = (uint32_t)(sp2 - data);
    if (m_end == ofs || t_end == m_end + 1)
        return malformed(req, PS_HTTP_E_REQUEST_LINE);      /* a leading or doubled space */
    for (uint32_t i = ofs; i < m_end; i++)
        if (!is_tchar(data[i]))
            return malformed(req, PS_HTTP_E_METHOD);
    req->method_ofs = ofs;
    req->method_len = m_end - ofs;
    if (!parse_target(data, m_end + 1, t_end - m_end - 1, data + ofs, m_end - ofs, req))
        return malformed(req, PS_HTTP_E_TARGET);
    uint32_t v = t_end + 1;
    if (end - v != 8 || memcmp(data + v, "HTTP/1.", 7) != 0 || data[v + 7] < '0' || data[v + 7] > '9')
        return malformed(req, PS_HTTP_E_VERSION);
    req->version_minor = data[v + 7] - '0';
    return PS_HTTP_NEED_MORE;
}

/* A field line data[ofs..ofs+len), CRLF excluded. */
static int parse_field(const uint8_t *data, uint32_t ofs, uint32_t len, struct ps_http_request *req,
                       int *seen_host)
{
    uint32_t end = ofs + len, p = ofs;
    if (data[ofs] == ' ' || data[ofs] == '\t')
        return malformed(req, PS_HTTP_E_OBS_FOLD);
    while (p < end && is_tchar(data[p]))
        p++;
    if (p == ofs || p == end || data[p] != ':')
        return malformed(req, PS_HTTP_E_HEADER_NAME);
    uint32_t name_len = p - ofs;
    p++;
    for (uint32_t i = p; i < end; i++)
        if ((data[i] < 0x20 && data[i] != '\t') || data[i] == 0x7f)
            return malformed(req, PS_HTTP_E_HEADER_VALUE);
    while (p < end && (data[p] == ' ' || data[p] == '\t'))
        p++;
    uint32_t v_end = end;
    while (v_end > p && (data[v_end - 1] == ' ' || data[v_end - 1] == '\t'))
        v_end--;
    if (req->n_headers == PS_HTTP_MAX_HEADERS)
        return malformed(req, PS_HTTP_E_TOO_MANY_HEADERS);
    struct ps_http_header *h = &req->headers[req->n_headers++];
    h->name_ofs = ofs;
    h->name_len = name_len;
    h->value_ofs = p;
    h->value_len = v_end - p;

    if (equals_nocase(data, ofs, name_len, "host")) {
        if (*seen_host)
            return malformed(req, PS_HTTP_E_HOST);
        *seen_host = 1;
        for (uint32_t i = p; i < v_end; i++)
            if (!is_host_char(data[i]))
                return malformed(req, PS_HTTP_E_HOST);
        if (req->host_ofs == PS_HTTP_ABSENT) {     /* an absolute-form target's authority wins (RFC 9112 3.2.2) */
            req->host_ofs = p;
            req->host_len = v_end - p;
        }
    } else if (equals_nocase(data, ofs, name_len, "content-length")) {
        if (req->content_length >= 0 || p == v_end || v_end - p > 15)
            return malformed(req, PS_HTTP_E_CONTENT_LENGTH);
        int64_t n = 0;
        for (uint32_t i = p; i < v_end; i++) {
            if (data[i] < '0' || data[i] > '9')
                return malformed(req, PS_HTTP_E_CONTENT_LENGTH);
            n = n * 10 + (data[i] - '0');
        }
        req->content_length = n;
    } else if (equals_nocase(data, ofs, name_len, "transfer-encoding")) {
        if (req->chunked || !equals_nocase(data, p, v_end - p, "chunked"))
            return malformed(req, PS_HTTP_E_TRANSFER_ENCODING);
        req->chunked = 1;
    }
    return PS_HTTP_NEED_MORE;
}

int ps_http_parse_request(const uint8_t *data, uint32_t size, uint32_t max_head, struct ps_http_request *req)
{
    memset(req, 0, offsetof(struct ps_http_request, headers));
    req->query_ofs = req->host_ofs = PS_HTTP_ABSENT;
    req->content_length = -1;
    if (max_head == 0)
        max_head = PS_HTTP_HEAD_MAX;
    uint32_t limit = size < max_head ? size : max_head;
    uint32_t p = 0;
    int seen_request_line = 0, seen_host = 0;

    while (p + 1 < limit && data[p] == '\r' && data[p + 1] == '\n' && !seen_request_line)
        p += 2;
    for (;;) {
        const uint8_t *lf = p < limit ? memchr(data + p, '\n', limit - p) : NULL;
        if (lf == NULL)
            return limit == max_head ? malformed(req, PS_HTTP_E_TOO_LARGE) : PS_HTTP_NEED_MORE;
        uint32_t nl = (uint32_t)(lf - data);
        if (nl == p || data[nl - 1] != '\r')
            return malformed(req, PS_HTTP_E_LINE_ENDING);
        uint32_t len = nl - 1 - p;
        int r;
        if (!seen_request_line) {
            seen_request_line = 1;
            r = parse_request_line(data, p, len, req);
        } else if (len == 0) {
            if (req->content_length >= 0 && req->chunked)
                return malformed(req, PS_HTTP_E_TRANSFER_ENCODING);
            if (!seen_host && req->version_minor >= 1)
                return malformed(req, PS_HTTP_E_HOST);
            req->head_size = nl + 1;
            req->verdict = PS_HTTP_COMPLETE;
            return req->verdict;
        } else {
            r = parse_field(data, p, len, req, &seen_host);
        }
        if (r != PS_HTTP_NEED_MORE)
            return r;
        p = nl + 1;
    }
}

int ps_http_find_header(const uint8_t *data, const struct ps_http_request *req, const uint8_t *name,
                        uint32_t name_len, uint32_t start)
{
    for (uint32_t i = start; i < req->n_headers; i++) {
        const struct ps_http_header *h = &req->headers[i];
        if (h->name_len != name_len)
            continue;
        uint32_t k = 0;
        while (k < name_len && lower(data[h->name_ofs + k]) == lower(name[k]))
            k++;
        if (k == name_len)
            return (int)i;
    }
    return -1;
}

int ps_http_find_cookie(const uint8_t *data, const struct ps_http_request *req, const uint8_t *name,
                        uint32_t name_len, uint32_t *value_ofs, uint32_t *value_len)
{
    static const uint8_t cookie[] = "cookie";
    for (int i = ps_http_find_header(data, req, cookie, 6, 0); i >= 0;
         i = ps_http_find_header(data, req, cookie, 6, (uint32_t)i + 1)) {
        const struct ps_http_header *h = &req->headers[i];
        uint32_t p = h->value_ofs, end = h->value_ofs + h->value_len;
        /* cookie-string = cookie-pair *( ";" SP cookie-pair ); any whitespace around a pair is tolerated. */
        while (p < end) {
            while (p < end && (data[p] == ' ' || data[p] == '\t'))
                p++;
            uint32_t pair = p;
            while (p < end && data[p] != ';')
                p++;
            uint32_t pair_end = p, eq = pair;
            while (pair_end > pair && (data[pair_end - 1] == ' ' || data[pair_end - 1] == '\t'))
                pair_end--;
            while (eq < pair_end && data[eq] != '=')
                eq++;
            if (eq < pair_end && eq - pair == name_len && memcmp(data + pair, name, name_len) == 0) {
                *value_ofs = eq + 1;
                *value_len = pair_end - eq - 1;
                return 1;
            }
            p++;                            /* past the ';' */
        }
    }
    return 0;
}
