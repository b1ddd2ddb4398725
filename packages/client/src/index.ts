export { ChatClient, newClientMessageId, type ChatClientOptions } from './client';
export { ChatRest, type RestOptions } from './rest';
export { ChatApiError, ChatNetworkError, isApiError, isFinalSendError } from './errors';
export { fullJitterDelay, classifySeq, ACK_TIMEOUT_MS, HEARTBEAT_GRACE_MS, MAX_SEND_ATTEMPTS, RECONNECT_INITIAL_DELAY_MS, RECONNECT_MAX_DELAY_MS } from './policy';
export type * from './types';
