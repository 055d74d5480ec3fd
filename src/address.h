/*-------------------------------------------------------------------------
 *
 * address.h
 *		Which internet addresses a webhook may connect to (the SSRF guard).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOKS_ADDRESS_H
#define WEBHOOKS_ADDRESS_H

#include <sys/socket.h>

extern const char *webhooks_address_block_reason(const struct sockaddr *sa);

#endif							/* WEBHOOKS_ADDRESS_H */
