/*-------------------------------------------------------------------------
 *
 * address.c
 *		The SSRF guard's judgement of one address: may a webhook connect
 *		to it while webhooks.allow_private_addresses is off?
 *
 * Only globally reachable unicast addresses pass.  The blocks come from
 * IANA's IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and
 * its updates): every block whose "Globally Reachable" is false or N/A is
 * refused, and so is everything outside IPv6 global unicast (2000::/3).
 * An IPv6 address that embeds an IPv4 address (mapped, compatible,
 * SIIT-translated, NAT64, 6to4) is judged by the IPv4 address it embeds;
 * Teredo (2001::/32) lies in the refused 2001::/23.
 *
 * Pure computation on a socket address, with no PostgreSQL state, so that
 * test/address_test.c checks it address by address without a network.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "address.h"

/* An IPv4 block: the address in host order, and its prefix length */
typedef struct Block4
{
	uint32		prefix;
	int			bits;
	const char *what;
} Block4;

#define V4(a, b, c, d) ((uint32) (a) << 24 | (uint32) (b) << 16 | (uint32) (c) << 8 | (uint32) (d))

static const Block4 blocked_v4[] = {
	{V4(0, 0, 0, 0), 8, "an unspecified (\"this network\") address"},
	{V4(10, 0, 0, 0), 8, "a private address"},
	{V4(100, 64, 0, 0), 10, "a shared (carrier-grade NAT) address"},
	{V4(127, 0, 0, 0), 8, "a loopback address"},
	{V4(169, 254, 0, 0), 16, "a link-local address"},
	{V4(172, 16, 0, 0), 12, "a private address"},
	{V4(192, 0, 0, 0), 24, "an IETF protocol-assignment address"},
	{V4(192, 0, 2, 0), 24, "a documentation address"},
	{V4(192, 88, 99, 0), 24, "a 6to4 relay anycast address"},
	{V4(192, 168, 0, 0), 16, "a private address"},
	{V4(198, 18, 0, 0), 15, "a benchmarking address"},
	{V4(198, 51, 100, 0), 24, "a documentation address"},
	{V4(203, 0, 113, 0), 24, "a documentation address"},
	{V4(224, 0, 0, 0), 4, "a multicast address"},
	{V4(240, 0, 0, 0), 4, "a reserved or broadcast address"},
};

/* An IPv6 block: the first bytes of the prefix, and its length in bits */
typedef struct Block6
{
	uint8		prefix[16];
	int			bits;
	const char *what;
} Block6;

/* Blocks inside 2000::/3 that are not globally reachable */
static const Block6 blocked_v6[] = {
	{{0x20, 0x01, 0x00, 0x00}, 23, "an IETF protocol-assignment address (Teredo, benchmarking, ORCHID)"},
	{{0x20, 0x01, 0x0d, 0xb8}, 32, "a documentation address"},
	{{0x3f, 0xff, 0x00, 0x00}, 20, "a documentation address"},
};

static bool
in_block(const uint8 *addr, const uint8 *prefix, int bits)
{
	int			whole = bits / 8;
	int			rest = bits % 8;

	if (memcmp(addr, prefix, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((addr[whole] ^ prefix[whole]) & (uint8) (0xff << (8 - rest))) == 0;
}

/* Why an IPv4 address (host order) is refused, or NULL if it is not. */
static const char *
ipv4_block_reason(uint32 a)
{
	for (size_t i = 0; i < lengthof(blocked_v4); i++)
	{
		uint32		mask = ~(uint32) 0 << (32 - blocked_v4[i].bits);

		if ((a & mask) == blocked_v4[i].prefix)
			return blocked_v4[i].what;
	}
	return NULL;
}

/* The IPv4 address in four bytes, in host order */
static uint32
ipv4_at(const uint8 *b)
{
	return (uint32) b[0] << 24 | (uint32) b[1] << 16 | (uint32) b[2] << 8 | b[3];
}

/* Why an IPv6 address is refused, or NULL if it is not. */
static const char *
ipv6_block_reason(const uint8 *b)
{
	static const uint8 zero[16] = {0};
	static const uint8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const uint8 translated[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
	static const uint8 nat64[12] = {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

	if (memcmp(b, zero, 16) == 0)
		return "an unspecified address";
	if (memcmp(b, zero, 15) == 0 && b[15] == 1)
		return "a loopback address";

	/*
	 * Forms that carry an IPv4 address in their last 32 bits: mapped
	 * (::ffff:0:0/96), SIIT-translated (::ffff:0:0:0/96), compatible
	 * (::/96, deprecated) and the well-known NAT64 prefix (64:ff9b::/96).
	 */
	if (memcmp(b, mapped, 12) == 0 || memcmp(b, translated, 12) == 0 ||
		memcmp(b, zero, 12) == 0 || memcmp(b, nat64, 12) == 0)
		return ipv4_block_reason(ipv4_at(b + 12));
	/* 6to4 (2002::/16) carries one in bits 16 to 47. */
	if (b[0] == 0x20 && b[1] == 0x02)
		return ipv4_block_reason(ipv4_at(b + 2));

	/* Everything else outside global unicast is reserved or local. */
	if ((b[0] & 0xe0) != 0x20)
	{
		if ((b[0] & 0xfe) == 0xfc)
			return "a unique local (private) address";
		if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
			return "a link-local address";
		if (b[0] == 0xff)
			return "a multicast address";
		return "a reserved address (outside global unicast)";
	}
	for (size_t i = 0; i < lengthof(blocked_v6); i++)
		if (in_block(b, blocked_v6[i].prefix, blocked_v6[i].bits))
			return blocked_v6[i].what;
	return NULL;
}

/*
 * Why the guard refuses to connect to this address, or NULL if a webhook
 * may connect to it.
 */
const char *
webhooks_address_block_reason(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ipv4_block_reason(ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr));
	if (sa->sa_family == AF_INET6)
		return ipv6_block_reason(((const struct sockaddr_in6 *) sa)->sin6_addr.s6_addr);
	return "not an internet address";
}
