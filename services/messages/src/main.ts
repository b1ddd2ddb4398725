import { runMain } from '@chat/platform';
import { startMessagesService } from './app';

await runMain('messages', ['PostgreSQL', 'NATS'], startMessagesService);
