/**
 * @module The `meta <topic> <opaque>` extension command: what a client needs to route messages
 * (partition count, where this broker is). MetaQ clients learned this from ZooKeeper; metaq
 * clients ask the broker. The cluster adds partition leaders to the same reply.
 */
import type { RequestContext } from "../protocol/reply.ts";
import { result } from "../protocol/reply.ts";
import type { Router } from "../server/router.ts";

export interface TopicMetadata {
  readonly topic: string;
  readonly partitions: number;
  readonly brokerId: number;
  readonly broker: string;
  /** Partition -> `host:port` of its leader, when replicated. */
  readonly leaders?: Record<string, string>;
}

/** Extra facts the cluster adds to metadata replies. */
export type MetadataDecorator = (metadata: TopicMetadata, context: RequestContext) => TopicMetadata;

export function registerMetadataCommand(
  router: Router,
  decorate?: () => MetadataDecorator | undefined,
): void {
  router.addExtension("meta", {
    spec: { args: 1 },
    handle(command, context, respond) {
      const broker = router.broker;
      const topic = command.args[0];
      const settings = broker.topicSettings(topic);
      if (!settings) return respond(result(500, `The server do not accept topic ${topic}`));
      const metadata: TopicMetadata = {
        topic,
        partitions: settings.numPartitions,
        brokerId: broker.config.system.brokerId,
        broker: broker.brokerUrl.replace("meta://", ""),
      };
      const decorator = decorate?.();
      const decorated = decorator ? decorator(metadata, context) : metadata;
      respond(result(200, JSON.stringify(broker.metadataDecorator?.(decorated) ?? decorated)));
    },
  });
}
