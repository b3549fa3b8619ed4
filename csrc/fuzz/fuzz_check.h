/* fuzz_check.h: what the fuzz targets share.
 *
 * A target checks more than "no crash": each contract it can state from
 * the outside (offsets inside the frame, a segment that parses, a checksum
 * that verifies) is a FUZZ_CHECK, which aborts with the broken contract
 * named, so that libFuzzer saves the input as it saves a crash.
 */
#ifndef PS_FUZZ_CHECK_H
#define PS_FUZZ_CHECK_H 1

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: contract broken: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

/* The Internet checksum of the 'size' bytes at 'data' plus 'initial', the
 * plainest way (RFC 1071): what ps_csum() must agree with. */
static inline uint16_t
fuzz_csum_reference(const uint8_t *data, uint32_t size, uint32_t initial)
{
    uint64_t sum = initial;

    for (uint32_t i = 0; i < size; i++) {
        sum += i % 2 ? data[i] : (uint32_t) data[i] << 8;
    }
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return ~sum & 0xffff;
}

#endif /* PS_FUZZ_CHECK_H */
