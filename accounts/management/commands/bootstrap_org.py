from django.core.management.base import BaseCommand, CommandError

from accounts.services import bootstrap_org


class Command(BaseCommand):
    help = "Create (idempotently) a verified user and an organization they own; print a new admin API key last."

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--org", required=True, help="organization name")

    def handle(self, *args, email, password, org, **options):
        if len(password) < 8:
            raise CommandError("--password must be at least 8 characters")
        user, organization, raw = bootstrap_org(email=email, password=password, org_name=org)
        self.stdout.write(f"user: {user.email} (id {user.pk})")
        self.stdout.write(f"organization: {organization.name} (id {organization.pk}, slug {organization.slug})")
        self.stdout.write(raw)
