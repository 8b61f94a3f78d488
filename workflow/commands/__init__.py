"""Staff commands by area: tickets, trips and check-ins, SMS consent and routing."""
