import { createRoute } from '@hono/zod-openapi';
import { GetUsersReply, PageMetaSchema, SearchMessagesReply, SearchQuery, SearchResultSchema, unknownUser, usersById, type SearchResult } from '@chat/contracts';
import { z } from 'zod';
import type { Bus } from '../bus';
import { firstValues, routeApp } from '../http';
import { errors, ok, PAGE_ERRORS } from '../openapi';

const search = createRoute({
  method: 'get',
  path: '/search/messages',
  tags: ['Search'],
  summary: "The caller's messages matching q, newest first",
  description:
    'Messages the caller sent or received, in their conversations only (`conversationId`: just that one; one that is not theirs finds nothing), ' +
    'that match `q` as they read now: an edited message by its new content only, a deleted one never. ' +
    'Each word of `q` (split on white space) must appear in the content as a word or the start of a word, ignoring case and accents ' +
    '(`cafe zur` finds "Meet me at the Café Zürich"); words are cut as PostgreSQL\'s text-search parser cuts them ' +
    '("e-mail" is e-mail, e and mail; "don\'t" is don then t, adjacent); a word of only punctuation or emoji is left out, and a `q` of nothing else finds nothing. ' +
    '`q`: 1-200 characters after trimming; `limit`: 1-50, default 20.',
  request: { query: firstValues(SearchQuery) },
  responses: {
    200: ok('a page of matches, each with its conversation and the other participant', z.array(SearchResultSchema), { meta: PageMetaSchema }),
    ...errors(...PAGE_ERRORS),
  },
});

/** Search routes: GET /search/messages. */
export function searchRoutes(bus: Bus) {
  const app = routeApp();

  app.openapi(search, async (c) => {
    const q = c.req.valid('query');
    const page = await bus.call(c, bus.s.messages.search, { q: q.q, conversationId: q.conversationId, cursor: q.cursor, limit: q.limit }, SearchMessagesReply);
    const users = await usersById((ids) => bus.call(c, bus.s.conversations.getUsers, { ids }, GetUsersReply), page.items.map((h) => h.participantId));
    const data: SearchResult[] = page.items.map((h) => ({
      message: h.message,
      conversation: { id: h.message.conversationId, participant: users.get(h.participantId) ?? unknownUser(h.participantId) },
    }));
    return c.json({ data, meta: page.meta }, 200);
  });

  return app;
}
