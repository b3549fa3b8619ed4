/* fuzz_l7.c: libFuzzer target for the L7 parsers, csrc/http.c and csrc/tls_sni.c.
 *
 * Input: the first bytes of a client's stream (tests/fuzz/corpus/fuzz_l7/ holds curl's request and openssl's
 * ClientHello as tests/test_l7_capture_netns.py captured them, and a few of tests/test_l7_parse.py's cases).
 *
 * It runs ps_http_parse_request() with the default bound and with a bound taken from the first byte,
 * ps_http_find_header() and ps_http_find_cookie() on what it found, and ps_tls_client_hello_sni().  Besides
 * memory errors and undefined behaviour it checks what the callers rely on: verdicts and reasons in range,
 * every span inside the head (or the ClientHello's record), and a head never longer than its bound.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_check.h"
#include "http.h"

static void check_span(uint32_t ofs, uint32_t len, uint32_t end)
{
    FUZZ_CHECK(ofs <= end && len <= end - ofs);
}

static void check_http(const uint8_t *data, uint32_t size, uint32_t max_head)
{
    struct ps_http_request req;
    int verdict = ps_http_parse_request(data, size, max_head, &req);

    FUZZ_CHECK(verdict == req.verdict && verdict >= PS_HTTP_NEED_MORE && verdict <= PS_HTTP_MALFORMED);
    FUZZ_CHECK(req.reason >= 0 && req.reason < PS_HTTP_E_COUNT);
    FUZZ_CHECK((verdict == PS_HTTP_MALFORMED) == (req.reason != PS_HTTP_OK));
    if (verdict != PS_HTTP_COMPLETE)
        return;
    uint32_t end = req.head_size;
    FUZZ_CHECK(end <= size && end <= (max_head ? max_head : PS_HTTP_HEAD_MAX));
    FUZZ_CHECK(end >= 4 && memcmp(data + end - 4, "\r\n\r\n", 4) == 0);
    check_span(req.method_ofs, req.method_len, end);
    check_span(req.path_ofs, req.path_len, end);
    if (req.query_ofs != PS_HTTP_ABSENT)
        check_span(req.query_ofs, req.query_len, end);
    if (req.host_ofs != PS_HTTP_ABSENT)
        check_span(req.host_ofs, req.host_len, end);
    FUZZ_CHECK(req.n_headers <= PS_HTTP_MAX_HEADERS);
    FUZZ_CHECK(req.version_minor >= 0 && req.version_minor <= 9);
    FUZZ_CHECK(!(req.chunked && req.content_length >= 0));
    for (uint32_t i = 0; i < req.n_headers; i++) {
        check_span(req.headers[i].name_ofs, req.headers[i].name_len, end);
        check_span(req.headers[i].value_ofs, req.headers[i].value_len, end);
        FUZZ_CHECK(req.headers[i].name_len > 0);
        /* Each field is found by its own name, at its own index or before. */
        int found = ps_http_find_header(data, &req, data + req.headers[i].name_ofs, req.headers[i].name_len, 0);
        FUZZ_CHECK(found >= 0 && (uint32_t)found <= i);
    }
    static const uint8_t names[][7] = {"canary", "PSWID", "a"};
    for (int k = 0; k < 3; k++) {
        uint32_t ofs = 0, len = 0;
        if (ps_http_find_cookie(data, &req, names[k], (uint32_t)strlen((const char *)names[k]), &ofs, &len))
            check_span(ofs, len, end);
    }
}

static void check_tls(const uint8_t *data, uint32_t size)
{
    struct ps_tls_sni sni;
    int verdict = ps_tls_client_hello_sni(data, size, &sni);

    FUZZ_CHECK(verdict == sni.verdict && verdict >= PS_TLS_NEED_MORE && verdict <= PS_TLS_MALFORMED);
    FUZZ_CHECK(sni.reason >= 0 && sni.reason < PS_TLS_E_COUNT);
    FUZZ_CHECK((verdict == PS_TLS_MALFORMED) == (sni.reason != PS_TLS_OK));
    if (verdict == PS_TLS_SNI || verdict == PS_TLS_NO_SNI)
        FUZZ_CHECK(sni.hello_size <= size && sni.hello_size > 9);
    if (verdict == PS_TLS_SNI) {
        check_span(sni.name_ofs, sni.name_len, sni.hello_size);
        FUZZ_CHECK(sni.name_len >= 1 && sni.name_len <= 255);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    check_http(data, (uint32_t)size, 0);
    if (size > 0)
        check_http(data, (uint32_t)size, data[0] + 1u);
    check_tls(data, (uint32_t)size);
    return 0;
}
