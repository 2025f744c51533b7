// The C side of package wire: reading and writing the attributes of vectl's messages (u16
// length including the 4-byte header, u16 type, payload padded to 4 bytes, host byte order).
// Included by the joiner (container/nsjoin) and the idle loop (container/idle); wire.go is
// the Go side. Everything here is static and allocation-free.
#ifndef VECTL_WIRE_H
#define VECTL_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct wire_attr {
	uint16_t type;
	const char *p; // payload
	size_t len;    // payload length
};

// wire_next reads the attribute at *off of msg (n bytes) into a and advances *off. It
// returns 1 for an attribute, 0 at the end, -1 for a malformed message.
static inline int wire_next(const char *msg, size_t n, size_t *off, struct wire_attr *a)
{
	if (*off >= n)
		return 0;
	if (n - *off < 4)
		return -1;
	uint16_t len, type;
	memcpy(&len, msg + *off, 2);
	memcpy(&type, msg + *off + 2, 2);
	if (len < 4 || len > n - *off)
		return -1;
	a->type = type;
	a->p = msg + *off + 4;
	a->len = len - 4;
	*off += (size_t)((len + 3) & ~3);
	return 1;
}

// wire_u16/u32/u64 read a payload field at any alignment.
static inline uint16_t wire_u16(const char *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static inline uint32_t wire_u32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static inline uint64_t wire_u64(const char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

// wire_str returns the payload as a string if it is NUL-terminated, else NULL.
static inline const char *wire_str(const struct wire_attr *a)
{
	return a->len > 0 && a->p[a->len - 1] == '\0' ? a->p : NULL;
}

// wire_put appends an attribute to buf (of size cap, *n bytes used); it returns -1 when it
// does not fit.
static inline int wire_put(char *buf, size_t cap, size_t *n, uint16_t type, const void *p, size_t len)
{
	size_t total = (4 + len + 3) & ~(size_t)3;
	if (len > 0xfff0 || cap - *n < total)
		return -1;
	uint16_t l = (uint16_t)(4 + len);
	memcpy(buf + *n, &l, 2);
	memcpy(buf + *n + 2, &type, 2);
	memcpy(buf + *n + 4, p, len);
	memset(buf + *n + 4 + len, 0, total - 4 - len);
	*n += total;
	return 0;
}

static inline int wire_put_u32(char *buf, size_t cap, size_t *n, uint16_t type, uint32_t v)
{
	return wire_put(buf, cap, n, type, &v, sizeof v);
}

static inline int wire_put_str(char *buf, size_t cap, size_t *n, uint16_t type, const char *s)
{
	return wire_put(buf, cap, n, type, s, strlen(s) + 1);
}

// wire_unhex decodes hex text into out (cap bytes); it returns the length or -1.
static inline long wire_unhex(const char *hex, char *out, size_t cap)
{
	size_t len = strlen(hex);
	if (len % 2 || len / 2 > cap)
		return -1;
	for (size_t i = 0; i < len / 2; i++) {
		int v = 0;
		for (int k = 0; k < 2; k++) {
			char c = hex[2 * i + k];
			int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
			if (d < 0)
				return -1;
			v = v * 16 + d;
		}
		out[i] = (char)v;
	}
	return (long)(len / 2);
}

// wire_hex encodes n bytes as lower-case hex into out, which holds 2n+1 bytes.
static inline void wire_hex(const char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[(unsigned char)in[i] >> 4];
		out[2 * i + 1] = digits[(unsigned char)in[i] & 15];
	}
	out[2 * n] = '\0';
}

#endif
