import { ChatError } from '@chat/contracts';
import { IpMatcher, type Config, type Logger } from '@chat/platform';
import type { Principal, TokenVerifier } from '../auth';
import { clientIp } from './client-ip';
import type { RateLimits } from './rate-limits';
import type { WsTickets } from './tickets';

export type Credential = { token: string } | { ticket: string } | undefined;

/**
 * The checks every request and every upgrade passes, in this order: the IP
 * denylist, the auth-failure ban, then the credential. REST and WebSocket
 * share this one path, so neither can be the weaker door.
 */
export class Gate {
  private readonly denylist: IpMatcher;
  private readonly trustProxy: boolean;

  constructor(
    config: Pick<Config, 'IP_DENYLIST' | 'TRUST_PROXY'>,
    private readonly limits: RateLimits,
    private readonly verify: TokenVerifier,
    private readonly tickets: WsTickets,
    private readonly log: Logger,
  ) {
    this.denylist = new IpMatcher(config.IP_DENYLIST);
    this.trustProxy = config.TRUST_PROXY;
  }

  clientIp(remoteAddress: string | undefined, forwardedFor: string | string[] | undefined): string {
    return clientIp(remoteAddress, Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor, this.trustProxy);
  }

  /**
   * IP_BLOCKED for a denied address, and for one banned after too many failed
   * authentications (SPEC 8 puts both under "refused"); the ban says when it
   * ends, in Retry-After.
   */
  async admit(ip: string): Promise<void> {
    if (this.denylist.size && this.denylist.matches(ip)) throw new ChatError('IP_BLOCKED', 'requests from this address are not accepted');
    const failures = await this.limits.authFailures.peek(ip);
    if (failures && failures.consumed > this.limits.authFailures.points) {
      const retryAfterMs = Math.max(1, Math.ceil(failures.resetMs));
      throw new ChatError('IP_BLOCKED', `too many failed authentications from this address: blocked for ${Math.ceil(retryAfterMs / 1000)} s`, undefined, {
        retryAfterMs,
      });
    }
  }

  /**
   * The principal behind a token or a ticket. A credential that is presented
   * and wrong counts against the caller's IP; past the limit the IP is banned
   * (AUTH_BAN_MS). No credential at all is a 401 that does not count: it is a
   * client that has not logged in, not one guessing.
   */
  async authenticate(ip: string, credential: Credential, requestId: string): Promise<Principal> {
    if (!credential) throw new ChatError('UNAUTHORIZED', 'missing bearer token');
    try {
      return 'token' in credential ? await this.verify(credential.token) : await this.tickets.redeem(credential.ticket);
    } catch (err) {
      if (err instanceof ChatError && err.code === 'UNAUTHORIZED') {
        const r = await this.limits.authFailures.consume(ip);
        if (r.consumed === this.limits.authFailures.points + 1)
          this.log.warn({ ip, requestId, banMs: r.resetMs }, 'too many failed authentications: address banned');
      }
      throw err;
    }
  }
}
