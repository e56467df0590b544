CREATE TABLE "active_deployments" (
	"application_id" uuid NOT NULL,
	"environment" text NOT NULL,
	"deployment_id" uuid NOT NULL,
	"owner_id" uuid NOT NULL,
	CONSTRAINT "active_deployments_application_id_environment_pk" PRIMARY KEY("application_id","environment")
);
--> statement-breakpoint
CREATE TABLE "deployments" (
	"id" uuid PRIMARY KEY NOT NULL,
	"owner_id" uuid NOT NULL,
	"application_id" uuid NOT NULL,
	"environment" text NOT NULL,
	"number" integer NOT NULL,
	"version_id" uuid,
	"version" text NOT NULL,
	"build_id" uuid NOT NULL,
	"variant" text NOT NULL,
	"artifact_key" text NOT NULL,
	"sha256" text NOT NULL,
	"size" bigint NOT NULL,
	"kind" text,
	"phases" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"config" text DEFAULT '' NOT NULL,
	"withdrawn_at" timestamp with time zone,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "edge_token_scopes" (
	"token_id" uuid PRIMARY KEY NOT NULL,
	"all_owners" boolean NOT NULL,
	"owner_ids" jsonb DEFAULT '[]'::jsonb NOT NULL
);
--> statement-breakpoint
ALTER TABLE "active_deployments" ADD CONSTRAINT "active_deployments_application_id_applications_id_fk" FOREIGN KEY ("application_id") REFERENCES "public"."applications"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "active_deployments" ADD CONSTRAINT "active_deployments_deployment_id_deployments_id_fk" FOREIGN KEY ("deployment_id") REFERENCES "public"."deployments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "active_deployments" ADD CONSTRAINT "active_deployments_owner_id_owners_id_fk" FOREIGN KEY ("owner_id") REFERENCES "public"."owners"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "deployments" ADD CONSTRAINT "deployments_owner_id_owners_id_fk" FOREIGN KEY ("owner_id") REFERENCES "public"."owners"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "deployments" ADD CONSTRAINT "deployments_application_id_applications_id_fk" FOREIGN KEY ("application_id") REFERENCES "public"."applications"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "deployments" ADD CONSTRAINT "deployments_version_id_versions_id_fk" FOREIGN KEY ("version_id") REFERENCES "public"."versions"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "edge_token_scopes" ADD CONSTRAINT "edge_token_scopes_token_id_tokens_id_fk" FOREIGN KEY ("token_id") REFERENCES "public"."tokens"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "active_deployments_env_idx" ON "active_deployments" USING btree ("environment","owner_id");--> statement-breakpoint
CREATE UNIQUE INDEX "deployments_app_number_idx" ON "deployments" USING btree ("application_id","number");--> statement-breakpoint
CREATE INDEX "deployments_version_idx" ON "deployments" USING btree ("version_id");--> statement-breakpoint
CREATE INDEX "deployments_sha256_idx" ON "deployments" USING btree ("sha256");