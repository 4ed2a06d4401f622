// One Vercel AI SDK call against the gateway, printed as JSON on stdout (tests/e2e/test_client_ai_sdk.py).
// Usage: node ai-sdk.mjs <openai|anthropic> <plain|stream|tool|object> <prompt>
// Environment: GATEWAY_URL (the gateway's root), GATEWAY_KEY (an sk_cdx_ key), MODEL (a catalog model).
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { generateObject, generateText, stepCountIs, streamText, tool } from 'ai';
import { z } from 'zod';

const [providerName, mode, prompt] = process.argv.slice(2);
const { GATEWAY_URL: base, GATEWAY_KEY: apiKey, MODEL: modelId } = process.env;
const model = providerName === 'openai'
  ? createOpenAI({ baseURL: `${base}/v1`, apiKey })(modelId) // the Responses API
  : createAnthropic({ baseURL: `${base}/anthropic/v1`, apiKey })(modelId);

const getWeather = tool({
  description: 'Weather for a city',
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => `sunny in ${city}`,
});

const run = {
  async plain() {
    const result = await generateText({ model, prompt });
    return { text: result.text, usage: result.usage };
  },
  async stream() {
    const result = streamText({ model, prompt });
    const chunks = [];
    for await (const chunk of result.textStream) chunks.push(chunk);
    return { text: chunks.join(''), chunks: chunks.length, usage: await result.usage };
  },
  async tool() {
    const result = await generateText({ model, prompt, tools: { get_weather: getWeather }, stopWhen: stepCountIs(3) });
    const steps = result.steps.map((step) => ({
      toolCalls: step.toolCalls.map((call) => ({ name: call.toolName, input: call.input })),
      toolResults: step.toolResults.map((toolResult) => toolResult.output),
    }));
    return { text: result.text, steps, usage: result.totalUsage };
  },
  async object() {
    const schema = z.object({ name: z.string(), age: z.number().int(), tags: z.array(z.string()) });
    const result = await generateObject({ model, prompt, schema });
    return { object: result.object, usage: result.usage };
  },
};

console.log(JSON.stringify(await run[mode]()));
