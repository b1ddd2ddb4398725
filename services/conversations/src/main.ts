import { runMain } from '@chat/platform';
import { startConversationsService } from './app';

await runMain('conversations', ['PostgreSQL', 'NATS'], startConversationsService);
