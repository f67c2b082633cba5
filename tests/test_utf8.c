// UTF-8 decoding with maximal-subpart replacement, checked against the byte sequences of
// Unicode's table 3-7 and the replacement counts Python's bytes.decode(errors="replace")
// gives; encode/decode round trip over every scalar value.
#include <string.h>

#include "test_util.h"
#include "utf8.h"

// Decodes all of s and returns the code points written to cps.
static int decode_all(const char *s, size_t n, uint32_t *cps) {
    int count = 0;
    for (size_t i = 0; i < n;) {
        i += utf8_decode((const uint8_t *)s + i, n - i, &cps[count]);
        count++;
    }
    return count;
}

static void test_replacement(void) {
    uint32_t cp[16];
    // Python: b"\xe2\x82".decode("utf-8", "replace") == "\ufffd" (one maximal subpart).
    CHECK(decode_all("\xe2\x82", 2, cp) == 1 && cp[0] == 0xFFFD);
    // b"\xe2\x82A" -> "\ufffdA"
    CHECK(decode_all("\xe2\x82" "A", 3, cp) == 2 && cp[0] == 0xFFFD && cp[1] == 'A');
    // b"\xed\xa0\x80" (a surrogate) -> three replacements: ED is a lead whose A0 is not allowed.
    CHECK(decode_all("\xed\xa0\x80", 3, cp) == 3 && cp[0] == 0xFFFD && cp[2] == 0xFFFD);
    // b"\xc0\xaf" (overlong) -> two; b"\xf4\x90\x80\x80" (> U+10FFFF) -> four.
    CHECK(decode_all("\xc0\xaf", 2, cp) == 2);
    CHECK(decode_all("\xf4\x90\x80\x80", 4, cp) == 4);
    // b"\xf0\x9f\x98" (truncated emoji) -> one.
    CHECK(decode_all("\xf0\x9f\x98", 3, cp) == 1 && cp[0] == 0xFFFD);
    CHECK(decode_all("\xf0\x9f\x98\x80", 4, cp) == 1 && cp[0] == 0x1F600);
    CHECK(decode_all("\xff\xfe", 2, cp) == 2);
    CHECK(decode_all("\xef\xbf\xbd", 3, cp) == 1 && cp[0] == 0xFFFD); // a real U+FFFD
}

static void test_round_trip(void) {
    int bad = 0;
    for (uint32_t c = 0; c <= 0x10FFFF; c++) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        char buf[4];
        size_t n = utf8_encode(c, buf);
        uint32_t back;
        bad += utf8_decode((const uint8_t *)buf, n, &back) != n || back != c || !utf8_valid((const uint8_t *)buf, n);
    }
    CHECK(bad == 0);
    char buf[4];
    CHECK(utf8_encode(0xD800, buf) == 3 && memcmp(buf, "\xef\xbf\xbd", 3) == 0);
    CHECK(utf8_encode(0x110000, buf) == 3);
}

static void test_valid(void) {
    CHECK(utf8_valid((const uint8_t *)"h\xc3\xa9llo \xf0\x9f\x98\x80 \xef\xbf\xbd", 15));
    CHECK(!utf8_valid((const uint8_t *)"\xe2\x82", 2));
    CHECK(!utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));
    CHECK(utf8_valid((const uint8_t *)"", 0));
}

int main(void) {
    RUN(test_replacement);
    RUN(test_round_trip);
    RUN(test_valid);
    return test_exit();
}
