import { runMain } from '@chat/platform';
import { startPresenceService } from './app';

await runMain('presence', ['NATS', 'Redis'], startPresenceService);
