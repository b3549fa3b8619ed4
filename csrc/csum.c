/* csum.c: the Internet checksum (RFC 1071) and its incremental update (RFC 1624). */
#include "pyswitch.h"

/* Folds a wide one's complement sum to 16 bits. */
static inline uint16_t
csum_fold(uint64_t sum)
{
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return sum;
}

/* Returns the checksum of the 'size' bytes at 'data', read as big-endian
 * 16-bit words (an odd last byte padded with a zero byte), with the 32-bit
 * partial sum 'initial' (e.g. a pseudo-header's) added: the folded sum,
 * complemented.  The caller stores the result big-endian. */
uint16_t
ps_csum(const uint8_t *data, uint32_t size, uint32_t initial)
{
    uint64_t sum = initial;
    uint32_t i;

    for (i = 0; i + 1 < size; i += 2) {
        sum += (uint32_t) data[i] << 8 | data[i + 1];
    }
    if (size & 1) {
        sum += (uint32_t) data[size - 1] << 8;
    }
    return ~csum_fold(sum) & 0xffff;
}

/* Returns checksum 'check' updated for a 16-bit field changing from
 * 'old_value' to 'new_value', all host order: RFC 1624 equation 3,
 * HC' = ~(~HC + ~m + m'). */
uint16_t
ps_csum_update16(uint16_t check, uint16_t old_value, uint16_t new_value)
{
    uint32_t sum = (uint16_t) ~check + (uint16_t) ~old_value + (uint32_t) new_value;

    return ~csum_fold(sum) & 0xffff;
}

/* Like ps_csum_update16() for a 32-bit field: the high half first. */
uint16_t
ps_csum_update32(uint16_t check, uint32_t old_value, uint32_t new_value)
{
    check = ps_csum_update16(check, old_value >> 16, new_value >> 16);
    return ps_csum_update16(check, old_value & 0xffff, new_value & 0xffff);
}
