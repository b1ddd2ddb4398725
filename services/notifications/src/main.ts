import { runMain } from '@chat/platform';
import { startNotificationsService } from './app';

await runMain('notifications', ['PostgreSQL', 'NATS'], startNotificationsService);
