/*
 * address_test.c: the SSRF guard's judgement, address by address.
 *
 * Links src/address.c alone and asks it about each address below, without
 * any network: the guard must refuse everything that is not globally
 * reachable unicast (IANA special-purpose registries), and judge an IPv6
 * address that embeds an IPv4 address by the address it embeds.  Prints
 * one TAP line per address; exits non-zero if any is judged wrongly.
 *
 * Built and run by test/run-tests.sh.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "address.h"

/* A program of its own: the C library's printf, not libpgport's. */
#undef printf

typedef struct Case
{
	const char *address;
	bool		allowed;
} Case;

static const Case cases[] = {
	/* globally reachable unicast passes */
	{"8.8.8.8", true},
	{"1.1.1.1", true},
	{"93.184.216.34", true},
	{"100.63.255.255", true},
	{"100.128.0.0", true},
	{"172.15.255.255", true},
	{"172.32.0.0", true},
	{"192.0.1.255", true},
	{"192.0.3.0", true},
	{"192.88.98.255", true},
	{"198.17.255.255", true},
	{"198.20.0.0", true},
	{"223.255.255.255", true},
	{"2606:4700:4700::1111", true},
	{"2a00:1450:4001:80b::200e", true},
	{"2001:4860:4860::8888", true},
	{"2002:0808:0808::1", true},	/* 6to4 of 8.8.8.8 */
	{"::ffff:8.8.8.8", true},
	{"64:ff9b::8.8.8.8", true},

	/* IPv4 special-purpose blocks */
	{"0.0.0.0", false},
	{"0.1.2.3", false},
	{"10.0.0.1", false},
	{"10.255.255.255", false},
	{"100.64.0.1", false},
	{"100.127.255.255", false},
	{"127.0.0.1", false},
	{"127.255.255.254", false},
	{"169.254.169.254", false},
	{"172.16.0.1", false},
	{"172.31.255.255", false},
	{"192.0.0.1", false},
	{"192.0.2.1", false},
	{"192.88.99.1", false},
	{"192.168.1.1", false},
	{"198.18.0.1", false},
	{"198.19.255.255", false},
	{"198.51.100.7", false},
	{"203.0.113.9", false},
	{"224.0.0.1", false},
	{"239.255.255.250", false},
	{"240.0.0.1", false},
	{"255.255.255.255", false},

	/* IPv6 special-purpose blocks and non-global space */
	{"::", false},
	{"::1", false},
	{"100::1", false},			/* discard-only */
	{"64:ff9b:1::1", false},	/* local-use NAT64 */
	{"2001::1", false},			/* Teredo */
	{"2001:0:4136:e378:8000:63bf:3fff:fdd2", false},
	{"2001:2::1", false},		/* benchmarking */
	{"2001:db8::1", false},		/* documentation */
	{"2001:db8:ffff::1", false},
	{"3fff::1", false},			/* documentation (2024) */
	{"fc00::1", false},
	{"fd12:3456::1", false},
	{"fe80::1", false},
	{"fec0::1", false},
	{"ff02::1", false},
	{"4000::1", false},			/* outside 2000::/3 */
	{"1000::1", false},

	/* IPv4 embedded in IPv6: judged by the IPv4 address */
	{"::ffff:127.0.0.1", false},
	{"::ffff:10.0.0.1", false},
	{"::ffff:169.254.169.254", false},
	{"::ffff:192.0.2.1", false},
	{"::ffff:0:127.0.0.1", false},	/* SIIT-translated */
	{"::ffff:0:10.1.2.3", false},
	{"::127.0.0.1", false},		/* compatible */
	{"::10.0.0.1", false},
	{"64:ff9b::127.0.0.1", false},
	{"64:ff9b::a9fe:a9fe", false},
	{"64:ff9b::192.168.0.1", false},
	{"2002:7f00:0001::1", false},	/* 6to4 of 127.0.0.1 */
	{"2002:0a00:0001::1", false},	/* 6to4 of 10.0.0.1 */
	{"2002:c0a8:0101::1", false},	/* 6to4 of 192.168.1.1 */
	{"2002:a9fe:a9fe::1", false},	/* 6to4 of 169.254.169.254 */
};

int
main(void)
{
	int			failed = 0;
	int			n = (int) lengthof(cases);

	printf("1..%d\n", n);
	for (int i = 0; i < n; i++)
	{
		struct sockaddr_storage ss;
		const char *reason;

		memset(&ss, 0, sizeof(ss));
		if (inet_pton(AF_INET, cases[i].address,
					  &((struct sockaddr_in *) &ss)->sin_addr) == 1)
			ss.ss_family = AF_INET;
		else if (inet_pton(AF_INET6, cases[i].address,
						   &((struct sockaddr_in6 *) &ss)->sin6_addr) == 1)
			ss.ss_family = AF_INET6;
		else
		{
			printf("not ok %d - %s does not parse\n", i + 1, cases[i].address);
			failed++;
			continue;
		}
		reason = webhooks_address_block_reason((struct sockaddr *) &ss);
		if ((reason == NULL) == cases[i].allowed)
			printf("ok %d - %s %s%s\n", i + 1, cases[i].address,
				   reason ? "refused: " : "allowed", reason ? reason : "");
		else
		{
			printf("not ok %d - %s should be %s%s%s\n", i + 1,
				   cases[i].address,
				   cases[i].allowed ? "allowed, but is refused: " : "refused, but is allowed",
				   reason ? reason : "", "");
			failed++;
		}
	}
	printf("%d passed, %d failed\n", n - failed, failed);
	return failed > 0;
}
